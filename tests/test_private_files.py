"""The workspace, its database and kept photos are readable by their owner only: folders 0700, files
0600, whatever the umask (the database's -wal and -shm files take the database file's mode)."""

from __future__ import annotations

import os
import stat

import pytest

from snapid.feedback.storage import PhotoStore
from snapid.track.db import get_engine, transaction
from snapid.track.predictions import count_predictions
from snapid.workspace import Workspace
from tests.conftest import encode, photo


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    before = os.umask(0o022)  # the usual default, which made these files 0644 and folders 0755
    yield
    os.umask(before)


def test_a_new_workspace_and_its_database_are_private(tmp_path):
    ws = Workspace.at(tmp_path / "new-home")
    assert _mode(ws.home) == 0o700
    engine = get_engine(f"sqlite:///{ws.database}")
    with transaction(engine) as s:
        count_predictions(s)
    files = [p for p in ws.home.iterdir() if p.name.startswith("snapid.db")]
    assert {p.name for p in files} >= {"snapid.db", "snapid.db-wal", "snapid.db-shm"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_kept_photos_and_their_folders_are_private(tmp_path, engine):
    store = PhotoStore(tmp_path / "home" / "uploads", engine)
    upload_id = store.save(encode(photo((200, 150)), "JPEG"), prediction_id=None)
    kept, thumb = store.photo(upload_id), store.thumbnail(upload_id)
    assert _mode(kept) == _mode(thumb) == 0o600
    assert _mode(kept.parent) == _mode(store.root) == 0o700
