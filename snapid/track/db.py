"""Engines and transactions. SQLite by default (WAL, foreign keys, a busy timeout); any SQLAlchemy URL works."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from snapid.errors import SnapidError
from snapid.track.tables import Base


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_CREATE_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per URL per process; tables created on first use."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise SnapidError(f"SNAPID_DB_URL {url!r} is not a valid SQLAlchemy URL ({exc})", code="bad_db_url") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        try:
            with _CREATE_LOCK:  # threads of one process opening the same database at once (server startup)
                Base.metadata.create_all(engine)
        except OperationalError:  # another process created the tables at the same moment
            Base.metadata.create_all(engine)
    except Exception as exc:
        raise SnapidError(f"cannot open the database {parsed.render_as_string(hide_password=True)}: {exc}", code="db_unavailable", status=503) from None
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed as a whole, or rolled back as a whole."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
