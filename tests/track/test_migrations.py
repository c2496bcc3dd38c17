"""Schema migrations (issue 22): the revisions build exactly the models' schema; a workspace made by the
previous release (its code taken from git) opens, is upgraded and keeps every row, on SQLite (by itself,
after a copy of the file) and on PostgreSQL (refused until `snapid db upgrade`); a database newer than
this snapid is refused naming both revisions."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from snapid.errors import SnapidError
from snapid.track import migrations
from snapid.track.db import get_engine, make_engine, transaction
from snapid.track.tables import Base
from tests.data.test_importer import make_folder

REPO = Path(__file__).resolve().parents[2]
# The last commit before schema migrations: its snapid made workspaces with create_all and a column patch.
PREVIOUS_RELEASE = "734f4b464045b1f86214900f746b6a6bc65caf9a"


# --- databases: a fresh SQLite file, or a fresh database on the PostgreSQL server of SNAPID_TEST_PG_URL --------
@contextmanager
def databases(kind: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of URLs of new, empty databases of one backend (each PostgreSQL one dropped afterwards)."""
    made: list[str] = []
    admin = None
    if kind == "postgresql":
        admin_url = os.environ.get("SNAPID_TEST_PG_URL")
        if not admin_url:
            if os.environ.get("CI"):
                pytest.fail("CI must provide SNAPID_TEST_PG_URL (see .ci/run)")
            pytest.skip("SNAPID_TEST_PG_URL is not set (no PostgreSQL server here)")
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def new() -> str:
        if admin is None:
            path = tmp_path / f"db{len(made)}" / "snapid.db"
            path.parent.mkdir()
            made.append(str(path))
            return f"sqlite:///{path}"
        name = f"snapid_test_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    get_engine.cache_clear()
    try:
        yield new
    finally:
        get_engine.cache_clear()  # engines of dropped databases must not be found again
        if admin is not None:
            with admin.connect() as conn:
                for name in made:
                    conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database(request, tmp_path):
    with databases(request.param, tmp_path) as new:
        yield new


@pytest.fixture
def new_pg_database(tmp_path):
    with databases("postgresql", tmp_path) as new:
        yield new


def schema(url: str) -> dict:
    """Tables, columns (type, nullability), keys, indexes and unique constraints, as the database reports them."""
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out = {}
        for table in sorted(set(insp.get_table_names()) - {migrations.VERSION_TABLE}):
            out[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                        tuple(f["referred_columns"]), f["options"].get("ondelete"))
                                       for f in insp.get_foreign_keys(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in insp.get_indexes(table)),
                "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            }
        return out
    finally:
        engine.dispose()


def kept(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """``after`` seen through ``before``: its tables and columns only (later revisions add tables and columns)."""
    return {table: [{k: r[k] for k in before[table][0]} for r in after[table]] if before[table] else []
            for table in before}


def rows(url: str) -> dict[str, list[dict]]:
    """Every row of every table (but Alembic's), in primary-key order, read without snapid's code."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out = {}
            for table in sorted(set(insp.get_table_names()) - {migrations.VERSION_TABLE}):
                order = ", ".join(insp.get_pk_constraint(table)["constrained_columns"])
                out[table] = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
            return out
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.schema_status(conn).current
    finally:
        engine.dispose()


# --- the revisions and the models agree ---------------------------------------------------------------------
def test_head_is_the_newest_revision():
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    assert scripts.get_heads() == [migrations.HEAD]  # one line of revisions, and HEAD names its end


def test_the_revisions_build_exactly_the_models_schema(new_database):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrated, created = new_database(), new_database()
    engine = get_engine(migrated)  # an empty database: every revision runs
    assert revision(migrated) == migrations.HEAD
    plain = create_engine(created)
    Base.metadata.create_all(plain)
    plain.dispose()
    assert schema(migrated) == schema(created)
    assert len(schema(migrated)) == len(Base.metadata.tables)
    with engine.connect() as conn:  # what `alembic revision --autogenerate` would write: nothing
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


# --- the previous release's workspace ------------------------------------------------------------------------
OLD_WORKSPACE = """
import sys
from datetime import UTC, datetime
from pathlib import Path

import snapid

url, photos, tree = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
assert Path(snapid.__file__).resolve().is_relative_to(tree.resolve()), snapid.__file__

from snapid.importer import import_dataset
from snapid.track import feedback, predictions, runs, sessions
from snapid.track.db import get_engine, transaction

engine = get_engine(url)
import_dataset(photos, name="pets", engine=engine)
with transaction(engine) as s:
    runs.create_run(s, name="r1", dataset="pets", dataset_version=1, model="tiny", config={"lr": 0.1},
                    run_dir="/runs/r1", monitor="val_top1")
    runs.start_run(s, name="r1", host="h", pid=1)
    runs.record_epoch(s, name="r1", epoch=1, phase="probe", metrics={"top1": 0.5}, is_best=True, best_value=0.5)
    runs.record_artifact(s, name="r1", kind="checkpoint_best", path="/runs/r1/best.pt", sha256="a" * 64)
    runs.finish_run(s, name="r1", status="completed", summary={"val_top1": 0.5})
    predictions.record_predictions(s, rows=[{"id": "p1", "model_sha256": "b" * 64, "dataset": "pets",
                                             "top": [{"id": "cat", "score": 0.9}]}])
    feedback.add_upload(s, id="u1", sha256="c" * 64, prediction_id="p1", size=10, width=2, height=3,
                        kept_until=None)
    feedback.add_feedback(s, id="f1", prediction_id="p1", client_key="k", label="cat", not_in_list=False, text="")
    sessions.create_session(s, session_id="s" * 32, nonce="n" * 32, desktop_sha256="d" * 64, max_uploads=3,
                            single_use=False, lang="en", client="127.0.0.1",
                            expires_at=datetime(2030, 1, 1, tzinfo=UTC))
engine.dispose()
"""


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory) -> Path:
    """The previous release's package, from git (fetched when this clone is shallow)."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip(f"no git history here ({REPO} is not a git clone): the previous release cannot be built")
    wanted = f"{PREVIOUS_RELEASE}^{{commit}}"
    if _git("cat-file", "-e", wanted).returncode != 0:
        if _git("rev-parse", "--is-shallow-repository").stdout.strip() == b"true":
            _git("fetch", "--quiet", "--unshallow")
        if _git("cat-file", "-e", wanted).returncode != 0:
            _git("fetch", "--quiet", "origin", PREVIOUS_RELEASE)
        if _git("cat-file", "-e", wanted).returncode != 0:
            pytest.skip(f"commit {PREVIOUS_RELEASE} (the previous release) is not in this clone's history "
                        "and could not be fetched")
    archive = _git("archive", "--format=tar", PREVIOUS_RELEASE, "snapid")
    assert archive.returncode == 0, archive.stderr
    tree = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def make_old_workspace(tree: Path, url: str, tmp_path: Path) -> None:
    photos = make_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=3)
    env = {**os.environ, "PYTHONPATH": str(tree), "SNAPID_HOME": str(tmp_path / "old-home")}
    env.pop("SNAPID_DB_URL", None)
    done = subprocess.run([sys.executable, "-c", OLD_WORKSPACE, url, str(photos), str(tree)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)  # cwd: not this checkout's snapid
    assert done.returncode == 0, done.stderr


def check_current_code_reads(engine) -> None:
    from snapid.track import datasets, feedback, predictions, runs

    with transaction(engine) as s:
        assert len(datasets.load_manifest(s, name="pets").samples) == 6
        assert runs.get_run(s, name="r1")["status"] == "completed"
        assert [e["top1"] for e in runs.epochs(s, name="r1")] == [0.5]
        assert predictions.get_prediction(s, prediction_id="p1")["model_sha256"] == "b" * 64
        assert feedback.find_feedback(s, prediction_id="p1", client_key="k")["label"] == "cat"


def test_a_previous_release_sqlite_workspace_is_upgraded_on_open(previous_release, tmp_path):
    path = tmp_path / "home" / "snapid.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    make_old_workspace(previous_release, url, tmp_path)
    assert revision(url) is None  # made before migrations: no alembic_version
    before = rows(url)
    assert all(before[table] for table in ("datasets", "samples", "runs", "epochs", "predictions", "feedback"))

    get_engine.cache_clear()
    engine = get_engine(url)
    assert revision(url) == migrations.HEAD
    after = rows(url)
    assert kept(before, after) == before
    check_current_code_reads(engine)
    backup = path.with_name(f"snapid.db.bak-{migrations.UNVERSIONED}")
    assert rows(f"sqlite:///{backup}") == before  # the file as it was, complete on its own
    assert not list(path.parent.glob("*.tmp")) and oct(backup.stat().st_mode & 0o777) == "0o600"
    engine.dispose()
    get_engine.cache_clear()


@pytest.mark.postgres
def test_a_previous_release_postgresql_database_waits_for_db_upgrade(previous_release, new_pg_database, tmp_path):
    url = new_pg_database()
    make_old_workspace(previous_release, url, tmp_path)
    before = rows(url)
    get_engine.cache_clear()
    with pytest.raises(SnapidError) as refused:
        get_engine(url)
    assert refused.value.code == "db_needs_upgrade" and "snapid db upgrade" in refused.value.message
    assert revision(url) is None and rows(url) == before  # refused: nothing touched

    env = {**os.environ, "SNAPID_DB_URL": url, "SNAPID_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "snapid", "db", "upgrade", "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) | {"database": None} == {"database": None, "before": None,
                                                            "after": migrations.HEAD, "backup": None}
    engine = get_engine(url)
    assert kept(before, rows(url)) == before
    check_current_code_reads(engine)


# --- before migrations, a column patch: a database from then is adopted --------------------------------------
def test_an_older_predictions_table_gets_the_dataset_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the predictions table as an early snapid created it (no dataset column)
        db.execute("CREATE TABLE predictions (id VARCHAR(36) PRIMARY KEY, model_name VARCHAR(200) NOT NULL, "
                   "model_version VARCHAR(100) NOT NULL, model_sha256 VARCHAR(64) NOT NULL, top JSON NOT NULL, "
                   "unknown BOOLEAN NOT NULL, n_photos INTEGER NOT NULL, created_at DATETIME NOT NULL)")
        db.execute("INSERT INTO predictions VALUES ('old', 'm', '1', 'x', '[]', 0, 1, '2026-01-01 00:00:00')")
    get_engine.cache_clear()
    engine = get_engine(f"sqlite:///{path}")
    from snapid.track.predictions import record_predictions
    from snapid.track.tables import PredictionRow

    with transaction(engine) as s:
        record_predictions(s, rows=[{"id": "new", "model_sha256": "y", "dataset": "pills", "top": []}])
    with transaction(engine) as s:
        assert {r.id: r.dataset for r in s.query(PredictionRow)} == {"old": "", "new": "pills"}
    with sqlite3.connect(path) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list('predictions')")}
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        column = [row for row in db.execute("PRAGMA table_info('predictions')") if row[1] == "dataset"][0]
    assert "ix_predictions_dataset" in indexes and set(Base.metadata.tables) <= tables
    assert column[3] == 1 and column[4] == "''"  # NOT NULL, old rows given the model's default
    assert revision(f"sqlite:///{path}") == migrations.HEAD
    with sqlite3.connect(path.with_name(f"old.db.bak-{migrations.UNVERSIONED}")) as db:
        assert db.execute("SELECT id FROM predictions").fetchall() == [("old",)]
    engine.dispose()
    get_engine.cache_clear()


# --- refusals ------------------------------------------------------------------------------------------------
def test_a_database_newer_than_this_snapid_is_refused(new_database, tmp_path, monkeypatch):
    url = new_database()
    get_engine(url).dispose()
    get_engine.cache_clear()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'f00d'"))
    engine.dispose()
    with pytest.raises(SnapidError) as refused:
        get_engine(url)
    assert refused.value.code == "db_newer_than_code"
    assert "f00d" in refused.value.message and migrations.HEAD in refused.value.message
    with pytest.raises(SnapidError):
        migrations.upgrade(make_engine(url))
    assert revision(url) == "f00d"
    assert not list(tmp_path.rglob("*.bak-*"))  # nothing copied for a refusal


def test_an_up_to_date_database_is_not_copied_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'snapid.db'}"
    get_engine(url).dispose()
    get_engine.cache_clear()
    result = migrations.upgrade(make_engine(url))
    assert (result.before, result.after, result.backup) == (migrations.HEAD, migrations.HEAD, None)
    assert not list(tmp_path.glob("*.bak-*"))  # an empty database needs no copy either


def test_processes_opening_a_new_database_at_once_agree(tmp_path):
    url = f"sqlite:///{tmp_path / 'snapid.db'}"
    script = "import sys; from snapid.track.db import get_engine; get_engine(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert revision(url) == migrations.HEAD


# --- the command line ----------------------------------------------------------------------------------------
def test_db_current_and_upgrade_commands(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from snapid.cli import app

    monkeypatch.setenv("SNAPID_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SNAPID_DB_URL", raising=False)
    runner = CliRunner()
    done = runner.invoke(app, ["db", "current", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) | {"database": None} == {"database": None, "current": None,
                                                            "head": migrations.HEAD, "state": "empty"}
    done = runner.invoke(app, ["db", "upgrade", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["after"] == migrations.HEAD
    done = runner.invoke(app, ["db", "current"])
    assert done.exit_code == 0 and "up to date" in done.output


# --- the next revision: how a later snapid's upgrade goes ----------------------------------------------------
NEXT = f"{int(migrations.HEAD) + 1:04d}"  # the revision after this snapid's newest
NEXT_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "{next}"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    # SQLite: the table copied and the old one dropped, which must not cascade to its children
    recreate = "always" if op.get_bind().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("datasets", recreate=recreate) as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default="none"))
'''


def use_next_revision(tmp_path: Path, monkeypatch) -> None:
    """From now on, this snapid's revisions plus a 0002 that rebuilds the datasets table (most tables' parent)."""
    import shutil

    scripts = tmp_path / "migrations"
    shutil.copytree(Path(migrations.__file__).parent, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / f"{NEXT}_note.py").write_text(NEXT_REVISION.replace("{next}", NEXT)
                                                           .replace("{head}", migrations.HEAD))
    monkeypatch.setattr(migrations, "_HERE", scripts)
    monkeypatch.setattr(migrations, "HEAD", NEXT)


def test_an_older_database_is_upgraded_by_the_next_revision(new_database, tmp_path, monkeypatch):
    from snapid.importer import import_dataset

    head = migrations.HEAD
    url = new_database()
    engine = get_engine(url)
    import_dataset(make_folder(tmp_path / "pets", per_class=2), name="pets", engine=engine)
    engine.dispose()
    get_engine.cache_clear()
    before = rows(url)
    assert before["samples"] and revision(url) == head

    use_next_revision(tmp_path, monkeypatch)
    if url.startswith("sqlite"):
        engine = get_engine(url)  # upgraded on open, after a copy
        backup = Path(make_engine(url).url.database).with_name(f"snapid.db.bak-{head}")
        assert rows(f"sqlite:///{backup}") == before
    else:
        with pytest.raises(SnapidError) as refused:
            get_engine(url)
        assert refused.value.code == "db_needs_upgrade" and head in refused.value.message
        assert migrations.upgrade(make_engine(url)).after == NEXT
        engine = get_engine(url)
    assert revision(url) == NEXT
    after = rows(url)
    assert [r["note"] for r in after["datasets"]] == ["none"]
    assert {t: v for t, v in after.items() if t != "datasets"} == {t: v for t, v in before.items() if t != "datasets"}
    engine.dispose()
