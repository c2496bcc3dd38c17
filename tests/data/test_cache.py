"""`snapid data prepare`: shards, reuse, box crops, resume after a kill, and CachedDataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from snapid.data.cache import Item, PrepareParams, existing_shards, index_path, prepare, render_item
from snapid.errors import DatasetError
from snapid.images import DEFAULT_LIMITS
from snapid.importer import import_dataset
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from tests.conftest import write_image
from tests.data.test_importer import make_folder


def load(engine, name):
    with transaction(engine) as session:
        return dataset_store.load_manifest(session, name=name)


@pytest.fixture
def pets(tmp_path, engine):
    root = make_folder(tmp_path / "pets", per_class=10, size=(90, 60))
    import_dataset(root, name="pets", engine=engine)
    return load(engine, "pets")


def test_prepare_writes_shards_and_a_second_run_does_no_work(pets, home):
    params = PrepareParams(size=48)
    first = prepare(pets, home, params, shard_size=8)
    assert first.items == 20 and first.processed == 20 and first.splits == {"train": 16, "val": 2, "test": 2}
    shards = sorted(Path(first.cache_dir).glob("shard-*.npy"))
    assert len(shards) == 3 and np.load(shards[0]).shape == (8, 48, 48, 3)
    second = prepare(pets, home, params, shard_size=8)
    assert second.processed == 0 and second.reused == 20


def test_other_parameters_get_their_own_cache(pets, home):
    a = prepare(pets, home, PrepareParams(size=48))
    b = prepare(pets, home, PrepareParams(size=48, resize="letterbox"))
    assert a.cache_dir != b.cache_dir and b.processed == 20


def test_cached_dataset_returns_the_rendered_pixels_and_labels(pets, home):
    torch = pytest.importorskip("torch")
    from snapid.data.cached_dataset import CachedDataset, make_loader, normalize

    params = PrepareParams(size=40)
    prepare(pets, home, params, shard_size=7)
    train = CachedDataset(index_path(home, params, "pets", pets.version), split="train")
    assert len(train) == 16 and train.class_counts().tolist() == [8, 8]
    image, label = train[3]
    assert image.shape == (3, 40, 40) and image.dtype == torch.uint8
    batch, labels = train.__getitems__([5, 0, 3])
    assert torch.equal(batch[2], image) and labels[2].item() == label
    s = [s for s in pets.samples if s.split == "train"][3]
    item = Item(s.facts.sha256, s.path, s.facts.width, s.facts.height, None)
    expected = render_item(Path(pets.root) / s.path, item, params, DEFAULT_LIMITS)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected)
    seen = sum(len(b[1]) for b in make_loader(train, 5, shuffle=True))
    assert seen == 16
    x = normalize(batch, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.dtype == torch.float32 and float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6


def test_crop_boxes_gives_one_item_per_box(tmp_path, engine, home):
    root = tmp_path / "boxes"
    lines = ["path,label,x1,y1,x2,y2"]
    for i in range(6):
        write_image(root / f"{i}.jpg", (200, 120), seed=i)
        lines += [f"{i}.jpg,left,10,10,60,60", f"{i}.jpg,right,120,20,190,110"]
    (root / "b.csv").write_text("\n".join(lines) + "\n")
    import_dataset(root / "b.csv", name="boxes", engine=engine)
    m = load(engine, "boxes")
    report = prepare(m, home, PrepareParams(size=32, crop_boxes=True, pad=0.1))
    assert report.items == 12
    params = PrepareParams(size=32, crop_boxes=True, pad=0.1)
    meta = json.loads(index_path(home, params, "boxes", m.version).read_text())
    assert [c["id"] for c in meta["classes"]] == ["left", "right"]
    with pytest.raises(DatasetError):
        prepare(load(engine, "boxes"), home, PrepareParams(size=8))


def test_files_broken_after_import_fail_the_run_above_one_percent(pets, home):
    (Path(pets.root) / "dog" / "0.jpg").write_bytes(b"gone bad")
    with pytest.raises(DatasetError) as err:
        prepare(pets, home, PrepareParams(size=32))
    assert "dog/0.jpg" in err.value.message


def test_bad_parameters_are_named(pets, home):
    for params, word in ((PrepareParams(size=4), "--size"), (PrepareParams(resize="stretch"), "--resize"),
                         (PrepareParams(pad=5), "--pad")):
        with pytest.raises(DatasetError) as err:
            prepare(pets, home, params)
        assert word in err.value.message


KILL_SCRIPT = """
import sys
from snapid.data.cache import Item, PrepareParams, prepare
from snapid.track import datasets as dataset_store
from snapid.track.db import get_engine, transaction
from snapid.workspace import Workspace
ws = Workspace.at(sys.argv[1])
with transaction(get_engine(f"sqlite:///{ws.database}")) as s:
    m = dataset_store.load_manifest(s, name="big")
r = prepare(m, ws, PrepareParams(size=96), shard_size=4, workers=1)
print(r.processed)
"""


@pytest.mark.slow
def test_prepare_resumes_after_kill(tmp_path, engine, home):
    root = make_folder(tmp_path / "big", classes=("a", "b"), per_class=60, size=(640, 480))
    import_dataset(root, name="big", engine=engine)
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(home.home)], cwd=Path(__file__).parents[2],
                             stdout=subprocess.PIPE)
    folder = home.cache_dir(PrepareParams(size=96).key_dict())
    deadline = time.time() + 60
    while time.time() < deadline and len(list(folder.glob("shard-*.keys.json"))) < 3:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done_before = len(existing_shards(folder)[0])
    assert 0 < done_before < 120, "the kill should land mid-run"
    report = prepare(load(engine, "big"), home, PrepareParams(size=96), shard_size=4)
    assert report.processed == 120 - done_before and report.items == 120
    assert not list(folder.glob(".*.tmp"))
    # the resumed cache holds exactly what an uninterrupted run makes
    fresh = home.home.parent / "fresh"
    from snapid.workspace import Workspace

    clean = prepare(load(engine, "big"), Workspace.at(fresh), PrepareParams(size=96), shard_size=4)
    assert clean.processed == 120
    torch = pytest.importorskip("torch")
    from snapid.data.cached_dataset import CachedDataset

    resumed_ds = CachedDataset(index_path(home, PrepareParams(size=96), "big", 1), split=None)
    clean_ds = CachedDataset(index_path(Workspace.at(fresh), PrepareParams(size=96), "big", 1), split=None)
    order = list(range(len(clean_ds)))
    assert torch.equal(resumed_ds.__getitems__(order)[0], clean_ds.__getitems__(order)[0])
