"""`snapid db ...`: the database's schema revision, and upgrading it (snapid.track.migrations)."""

from __future__ import annotations

import typer

from snapid.cli.common import console, emit_json, settings

app = typer.Typer(help="The workspace database's schema: which revision it is at, and upgrading it.",
                  no_args_is_help=True)

AS_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")

_STATES = {
    "at_head": "up to date",
    "empty": "empty: its tables are created on first use",
    "unversioned": "made before schema migrations: run `snapid db upgrade`",
    "behind": "older than this snapid: run `snapid db upgrade`",
    "newer": "newer than this snapid: install the snapid that upgraded it",
}


def _engine():
    from snapid.track.db import make_engine
    from snapid.workspace import Workspace

    s = settings()
    Workspace.at(s.home)
    return make_engine(s.resolved_db_url())


@app.command("current")
def current(as_json: bool = AS_JSON) -> None:
    """Show the database's schema revision and this snapid's (the database is not changed)."""
    from snapid.track.migrations import schema_status

    engine = _engine()
    try:
        with engine.connect() as conn:
            status = schema_status(conn)
    finally:
        engine.dispose()
    url = engine.url.render_as_string(hide_password=True)
    if as_json:
        emit_json({"database": url, **status.as_dict()})
        return
    console.print(f"database: {url}", markup=False, highlight=False)
    console.print(f"revision: {status.current or 'none'} (this snapid: {status.head}): {_STATES[status.state]}",
                  markup=False, highlight=False)


@app.command("upgrade")
def upgrade(as_json: bool = AS_JSON) -> None:
    """Upgrade the database's schema to this snapid's revision, in one transaction.

    SQLite is first copied to snapid.db.bak-REVISION beside it (snapid also does this by itself when it
    opens an older SQLite workspace); back PostgreSQL up yourself first (pg_dump). A database newer than
    this snapid is refused."""
    from snapid.track.migrations import upgrade as upgrade_schema

    engine = _engine()
    try:
        result = upgrade_schema(engine)
    finally:
        engine.dispose()
    if as_json:
        emit_json({"database": engine.url.render_as_string(hide_password=True), **result.as_dict()})
        return
    if result.before == result.after:
        console.print(f"already at schema revision {result.after}", markup=False, highlight=False)
        return
    console.print(f"upgraded the schema from {result.before or 'none'} to {result.after}", markup=False,
                  highlight=False)
    if result.backup:
        console.print(f"the database as it was: {result.backup}", markup=False, highlight=False)
