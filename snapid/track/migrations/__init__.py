"""Schema migrations (Alembic): where a database stands, and bringing it to this snapid's schema.

Revisions live in ``versions/`` beside this file and run programmatically (no alembic.ini). Opening a
database (snapid.track.db.get_engine) calls `open_schema`:

- at this snapid's revision (`HEAD`): nothing to do, and Alembic is not even imported;
- empty (no snapid table): every table is created, on any backend;
- older, or made before migrations existed (tables, no ``alembic_version``): the embedded SQLite is
  copied to ``snapid.db.bak-<revision>`` beside it, then upgraded; any other database is refused until
  its owner backs it up and runs `snapid db upgrade`;
- newer than this snapid (a revision it does not know): refused on every backend, naming both revisions.

One process migrates at a time: SQLite's write lock (BEGIN IMMEDIATE) or a PostgreSQL advisory lock is
held while the revision is read again, the copy made and the revisions run, in one transaction."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, func, inspect, select, text

from snapid.errors import SnapidError
from snapid.track.tables import Base

HEAD = "0002"  # the newest revision in versions/: bump it with each new one (tests/track/test_migrations.py)
VERSION_TABLE = "alembic_version"
UNVERSIONED = "unversioned"  # the backup suffix of a database made before migrations existed
_PG_LOCK_KEY = 0x736E_6170_6964  # pg_advisory_xact_lock's key while migrating ("snapid")
_HERE = Path(__file__).resolve().parent
log = logging.getLogger("snapid.track")


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands. ``current``: its revision, None when it has no alembic_version (empty, or
    made before migrations existed); ``has_tables``: whether any snapid table exists."""

    current: str | None
    head: str
    has_tables: bool

    @property
    def state(self) -> str:
        """empty, at_head, unversioned (made before migrations), behind or newer."""
        if self.current == self.head:
            return "at_head"
        if self.current is None:
            return "unversioned" if self.has_tables else "empty"
        return "behind" if self.current in known_revisions() else "newer"

    def as_dict(self) -> dict:
        return {"current": self.current, "head": self.head, "state": self.state}


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None
    after: str
    backup: Path | None  # the copy made first (SQLite), None when there was nothing to keep

    def as_dict(self) -> dict:
        return {"before": self.before, "after": self.after, "backup": str(self.backup) if self.backup else None}


def alembic_config(connection: Connection | None = None):
    """Alembic's Config for snapid's revisions; ``connection``: the one env.py migrates through."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def schema_status(connection: Connection) -> SchemaStatus:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    current = None
    if VERSION_TABLE in tables:
        current = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return SchemaStatus(current=current, head=HEAD, has_tables=bool(tables & set(Base.metadata.tables)))


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _refuse_newer(engine: Engine, status: SchemaStatus) -> None:
    if status.state == "newer":
        raise SnapidError(
            f"the database {_describe(engine)} is at schema revision {status.current}, which this snapid does not "
            f"know (its newest is {status.head}): a newer snapid upgraded it. Install that snapid, or point "
            "SNAPID_DB_URL at another database", code="db_newer_than_code", status=503)


def open_schema(engine: Engine) -> None:
    """Called on every open (once per engine): see the module docstring."""
    with engine.connect() as conn:
        status = schema_status(conn)
    if status.state == "at_head":
        return
    _refuse_newer(engine, status)
    if status.state == "empty" or engine.dialect.name == "sqlite":
        result = upgrade(engine)
        if result.backup is not None:
            log.warning("upgraded the schema of %s from %s to %s; the file as it was: %s", _describe(engine),
                        result.before or UNVERSIONED, result.after, result.backup)
        return
    before = status.current or "none (made before schema migrations)"
    raise SnapidError(
        f"the database {_describe(engine)} is at schema revision {before}; this snapid needs {status.head}. "
        "Back it up (pg_dump), then run `snapid db upgrade`", code="db_needs_upgrade", status=503)


def upgrade(engine: Engine, *, backup: bool = True) -> UpgradeResult:
    """Bring the database to HEAD, in one transaction under a lock; SQLite is copied first (``backup``)
    unless it is empty. Refuses a database newer than this snapid."""
    from alembic import command

    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A revision that copies a table (batch mode) drops the old one: with foreign keys on, that
            # drop would cascade into the child tables. The pragma is a no-op inside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock: one migrating process at a time
        else:
            conn.begin()
            if engine.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        try:
            status = schema_status(conn)  # again, under the lock: another process may have done it
            _refuse_newer(engine, status)
            if status.state == "at_head":
                conn.rollback()
                return UpgradeResult(before=status.current, after=status.head, backup=None)
            copy = None
            if sqlite and backup and status.has_tables:
                copy = _backup_sqlite(engine, status.current or UNVERSIONED)
            dangling = _dangling(conn) if sqlite else set()
            command.upgrade(alembic_config(conn), "head")
            if sqlite and (new := _dangling(conn) - dangling):
                raise SnapidError(f"the schema upgrade would leave {len(new)} rows whose parent is missing "
                                  f"(first: {sorted(new)[0]}); nothing was changed", code="db_upgrade_failed")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
    return UpgradeResult(before=status.current, after=HEAD, backup=copy)


def _dangling(conn: Connection) -> set[tuple]:
    """SQLite's rows whose foreign key names no parent (checked around an upgrade run with the keys off)."""
    return {tuple(row) for row in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}


def _backup_sqlite(engine: Engine, revision: str) -> Path | None:
    """A consistent copy of the SQLite file (SQLite's online backup: the WAL included) as
    ``<file>.bak-<revision>``, written beside it and renamed into place; mode 0600 like the database."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    source_path = Path(database)
    target = source_path.with_name(f"{source_path.name}.bak-{revision}")
    partial = source_path.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        source = sqlite3.connect(source_path)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            copy.close()
            source.close()
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target
