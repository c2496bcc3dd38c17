"""Alembic's environment for snapid's schema. snapid runs it itself (snapid.track.migrations.upgrade) with
an open connection in ``config.attributes["connection"]``, inside a transaction it commits; no alembic.ini.

A developer writing the next revision (docs/decisions.md, "Schema migrations") runs Alembic's own
commands with that same config; without a connection, the database of SNAPID_DB_URL or the workspace."""

from __future__ import annotations

from alembic import context

from snapid.track.tables import Base


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # alembic revision --autogenerate and friends, by hand
    from sqlalchemy import create_engine

    from snapid.config import get_settings

    with create_engine(get_settings().resolved_db_url()).connect() as conn, conn.begin():
        _run(conn)
