"""Engines and transactions. SQLite by default (WAL, foreign keys, a busy timeout); any SQLAlchemy URL works."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, literal, text
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
                add_missing_columns(engine)
        except OperationalError:  # another process created the tables (or columns) at the same moment
            Base.metadata.create_all(engine)
            add_missing_columns(engine)
    except Exception as exc:
        raise SnapidError(f"cannot open the database {parsed.render_as_string(hide_password=True)}: {exc}", code="db_unavailable", status=503) from None
    return engine


def add_missing_columns(engine: Engine) -> list[str]:
    """create_all() builds missing tables, not columns a later snapid appended to an existing table:
    add those (nullable, with their scalar default) and any missing index. Additive changes only; a
    renamed or retyped column would need a real migration. Returns the columns added."""
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    quote = engine.dialect.identifier_preparer.quote
    added = []
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name not in existing:
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                ddl = f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {column.type.compile(dialect=engine.dialect)}"
                default = column.default
                if default is not None and default.is_scalar:
                    value = literal(default.arg, column.type).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
                    ddl += f" DEFAULT {value}"
                conn.execute(text(ddl))
                added.append(f"{table.name}.{column.name}")
            for index in table.indexes:
                index.create(conn, checkfirst=True)
    return added


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed as a whole, or rolled back as a whole."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
