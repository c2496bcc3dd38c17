"""Engines and transactions. SQLite by default (WAL, foreign keys, a busy timeout); any SQLAlchemy URL works.

How long a statement waits for a lock another connection holds is per engine: 30 s for commands, which
may as well wait for an import to finish; the server asks for a short one (SNAPID_SERVE_DB_TIMEOUT_S), so
a request fails fast with 503 (`is_busy`) instead of holding a connection for the whole wait."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from snapid.errors import SnapidError
from snapid.track.migrations import open_schema
from snapid.workspace import private_file


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")  # first: the next pragma may wait for a lock
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
    return on_connect


# SQLite's messages for a lock it waited for in vain; PostgreSQL's SQLSTATEs for lock_timeout
# (lock_not_available) and a cancelled statement (query_canceled)
_SQLITE_BUSY = ("database is locked", "database table is locked", "database schema is locked", "database is busy")
_PG_BUSY = {"55P03", "57014"}


def is_busy(exc: BaseException) -> bool:
    """An error raised because another connection held a lock longer than this engine's lock timeout."""
    if not isinstance(exc, OperationalError):
        return False
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code in _PG_BUSY:
        return True
    message = str(orig).lower()
    return any(text in message for text in _SQLITE_BUSY)


_CREATE_LOCK = threading.Lock()


def make_engine(url: str, *, lock_timeout_s: float = 30.0) -> Engine:
    """A new engine, its schema left as it is (`snapid db`); everything else opens through `get_engine`."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise SnapidError(f"SNAPID_DB_URL {url!r} is not a valid SQLAlchemy URL ({exc})", code="bad_db_url") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))  # 0600, and so its -wal and -shm files
        engine = create_engine(url, connect_args={"timeout": lock_timeout_s})
        event.listen(engine, "connect", _sqlite_pragmas(round(lock_timeout_s * 1000)))
    elif (parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg")
          and "options" not in parsed.query):  # options in the URL are the user's: left as they are
        engine = create_engine(url, pool_pre_ping=True,
                               connect_args={"options": f"-c lock_timeout={max(1, round(lock_timeout_s * 1000))}"})
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


@lru_cache(maxsize=8)
def get_engine(url: str, *, lock_timeout_s: float = 30.0) -> Engine:
    """One engine per URL (and lock timeout) per process; its schema created or upgraded on first use
    (snapid.track.migrations.open_schema: refused when it needs `snapid db upgrade`). ``lock_timeout_s``:
    how long a statement waits for another connection's lock before it fails (`is_busy`): SQLite's busy
    timeout; PostgreSQL's lock_timeout through psycopg2 / psycopg (other drivers keep the server's)."""
    engine = make_engine(url, lock_timeout_s=lock_timeout_s)
    try:
        with _CREATE_LOCK:  # threads of one process opening the same database at once (server startup)
            open_schema(engine)  # created, upgraded or refused (snapid.track.migrations)
    except Exception as exc:
        engine.dispose()
        if isinstance(exc, SnapidError):
            raise
        raise SnapidError(f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {exc}",
                          code="db_unavailable", status=503) from None
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed as a whole, or rolled back as a whole."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
