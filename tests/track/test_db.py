"""The workspace database: SQLite by default, PostgreSQL through SNAPID_DB_URL (a real server in CI)."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from snapid.config import Settings
from snapid.errors import SnapidError
from snapid.importer import import_dataset
from snapid.track import datasets as dataset_store
from snapid.track.db import get_engine, transaction
from tests.data.test_importer import make_folder


def test_default_database_is_sqlite_in_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPID_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("SNAPID_DB_URL", raising=False)
    url = Settings().resolved_db_url()
    assert url == f"sqlite:///{(tmp_path / 'ws' / 'snapid.db').resolve()}"
    monkeypatch.setenv("SNAPID_DB_URL", "postgresql+psycopg2://u:p@127.0.0.1/x")
    assert Settings().resolved_db_url().startswith("postgresql")


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine):
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_a_failed_transaction_leaves_nothing(engine, tmp_path):
    with pytest.raises(RuntimeError):
        with transaction(engine) as session:
            dataset_store.save_dataset_version(session, name="half", format="folder", root="/x", classes=[], samples=[],
                                               rejected=[], params={}, notes=[])
            raise RuntimeError("crash mid-import")
    with transaction(engine) as session:
        assert dataset_store.list_datasets(session) == []


def test_a_bad_url_is_a_clear_error():
    with pytest.raises(SnapidError) as err:
        get_engine("not a url at all")
    assert "SNAPID_DB_URL" in err.value.message


@pytest.fixture
def pg_engine():
    """A fresh database on the real PostgreSQL server named by SNAPID_TEST_PG_URL, dropped afterwards."""
    admin_url = os.environ.get("SNAPID_TEST_PG_URL")
    if not admin_url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide SNAPID_TEST_PG_URL (see .ci/run)")
        pytest.skip("SNAPID_TEST_PG_URL is not set (no PostgreSQL server here)")
    name = f"snapid_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    engine = get_engine(url)
    yield engine
    engine.dispose()
    get_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.postgres
def test_import_round_trips_through_postgresql(pg_engine, tmp_path):
    root = make_folder(tmp_path / "pets", classes=("0012", "9", "10"), per_class=5)
    first = import_dataset(root, name="pets", engine=pg_engine)
    second = import_dataset(root, name="pets", engine=pg_engine)
    assert (first.version, second.version, second.reused) == (1, 2, 15)
    with transaction(pg_engine) as session:
        m = dataset_store.load_manifest(session, name="pets")
        listed = dataset_store.list_datasets(session)
    assert [c.id for c in m.classes] == ["0012", "10", "9"]   # ids stay strings, sorted as strings
    assert len(m.samples) == 15 and all(len(s.facts.sha256) == 64 for s in m.samples)
    assert listed[0]["version"] == 2


@pytest.mark.postgres
def test_training_is_tracked_in_postgresql(pg_engine, tmp_path, monkeypatch):
    from snapid.track import runs as track
    from snapid.train.config import TrainConfig
    from snapid.train.fit import train
    from snapid.workspace import Workspace
    from tests.helpers import shapes_dataset
    from tests.train.test_fit import TINY

    import_dataset(shapes_dataset(tmp_path / "shapes"), name="shapes", engine=pg_engine)
    ws = Workspace.at(tmp_path / "home")
    summary = train("shapes", TrainConfig(**TINY), workspace=ws, engine=pg_engine, name="pg-run")
    with transaction(pg_engine) as session:
        run = track.get_run(session, name="pg-run")
        assert run["status"] == "completed" and len(track.epochs(session, name="pg-run")) == 5
    assert summary["val_top1"] == pytest.approx(run["summary"]["val_top1"])
