"""Feedback → review → merge → a new dataset version whose test split is untouched."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from snapid.errors import NotFound
from snapid.feedback import service
from snapid.feedback.merge import feedback_folder, merge_feedback
from snapid.feedback.promote import split_shas
from snapid.feedback.storage import PhotoStore
from snapid.track import datasets as dataset_store
from snapid.track import runs
from snapid.track.db import transaction
from snapid.track.predictions import record_predictions
from snapid.track.tables import utcnow
from tests.conftest import encode, photo

CLASSES = [{"id": "disc", "name": "Disc"}, {"id": "square", "name": "Square"}, {"id": "stripes", "name": "Stripes"}]


def answered(engine, store: PhotoStore, n_photos: int = 1, seed: int = 0, dataset: str = "shapes") -> str:
    """A recorded prediction with ``n_photos`` kept photos (what the server does with consent)."""
    pid = str(uuid.uuid4())
    with transaction(engine) as s:
        record_predictions(s, rows=[{"id": pid, "model_sha256": "0" * 64, "dataset": dataset,
                                     "top": [{"id": "disc", "score": 0.9}]}])
    store.save_all([encode(photo((80, 64), seed=seed + i)) for i in range(n_photos)], consent=True, prediction_id=pid)
    return pid


def give(engine, pid: str, **fields) -> str:
    record, _ = service.record_feedback(engine, prediction_id=pid, client_key="client-0001", classes=CLASSES, **fields)
    return record["id"]


def manifest(engine, version=None):
    with transaction(engine) as s:
        return dataset_store.load_manifest(s, name="shapes", version=version)


def test_approved_feedback_becomes_train_samples_of_a_new_version(shapes, engine, home, make_run):
    store = PhotoStore(home.uploads, engine)
    approved = give(engine, answered(engine, store, n_photos=2, seed=10), label="disc")
    relabelled = give(engine, answered(engine, store, seed=20), label="disc")
    rejected = give(engine, answered(engine, store, seed=30), label="square")
    pending = give(engine, answered(engine, store, seed=40), label="square")
    no_photo = give(engine, answered(engine, store, n_photos=0), label="stripes")
    service.review(engine, feedback_id=approved, action="approve", classes=CLASSES)
    service.review(engine, feedback_id=relabelled, action="relabel", label="STRIPES", classes=CLASSES)
    service.review(engine, feedback_id=rejected, action="reject", classes=CLASSES)
    service.review(engine, feedback_id=no_photo, action="approve", classes=CLASSES)
    before = manifest(engine)

    result = merge_feedback("shapes", workspace=home, engine=engine)

    assert result["from_version"] == before.version and result["version"] == before.version + 1
    assert result["added"] == 3 and result["feedback"] == 2 and result["skipped"] == {"no_photo_kept": 1}
    after = manifest(engine)
    new = after.samples[len(before.samples):]
    assert len(after.samples) == len(before.samples) + 3
    assert [s.path for s in after.samples[:len(before.samples)]] == [s.path for s in before.samples]
    assert {s.split for s in new} == {"train"} and sorted(s.label for s in new) == ["disc", "disc", "stripes"]
    folder = feedback_folder(home, "shapes")
    for sample in new:
        path = Path(sample.path)
        assert path.parent == folder and path.is_file() and sample.facts.sha256 == path.stem
        assert os.stat(path).st_nlink >= 2  # hard-linked to the stored upload, not copied
    assert split_shas(engine, dataset="shapes", version=before.version, split="test") == \
        split_shas(engine, dataset="shapes", version=after.version, split="test")
    assert [c.id for c in after.classes] == [c.id for c in before.classes]
    assert after.notes[-1].startswith("3 photos from 2 approved feedback added to train")

    # a second merge adds nothing and makes no version; merged feedback can no longer change
    again = merge_feedback("shapes", workspace=home, engine=engine)
    assert again["version"] is None and again["added"] == 0 and manifest(engine).version == after.version
    with pytest.raises(service.ReviewConflict):
        service.review(engine, feedback_id=approved, action="reject", classes=CLASSES)
    assert again["skipped"] == {"already_in_dataset": 3, "no_photo_kept": 1}
    assert service.review(engine, feedback_id=pending, action="approve", classes=CLASSES)["status"] == "approved"

    # retention deletes the uploads; the dataset's samples stay (they are its own links)
    assert store.sweep_retention(1, now=utcnow() + timedelta(days=2))["deleted_uploads"] == 5
    assert all(Path(s.path).is_file() for s in new)

    # the new version trains like any other (absolute sample paths resolve)
    run = make_run("after-merge")
    with transaction(engine) as s:
        assert runs.get_run(s, name=run)["dataset_version"] == after.version


def test_feedback_label_not_in_dataset_is_skipped(shapes, engine, home):
    store = PhotoStore(home.uploads, engine)
    other_classes = CLASSES + [{"id": "triangle", "name": "Triangle"}]  # the served model knows one more class
    record, _ = service.record_feedback(engine, prediction_id=answered(engine, store), client_key="client-0002",
                                        label="triangle", classes=other_classes)
    service.review(engine, feedback_id=record["id"], action="approve", classes=other_classes)
    result = merge_feedback("shapes", workspace=home, engine=engine)
    assert result["version"] is None and result["skipped"] == {"label_not_in_dataset": 1}


def test_cli_merge_feedback_and_sweep(shapes, engine, home):
    from typer.testing import CliRunner

    from snapid.cli import app

    store = PhotoStore(home.uploads, engine)
    record, _ = service.record_feedback(engine, prediction_id=answered(engine, store), client_key="client-0003",
                                        label="square", classes=CLASSES)
    service.review(engine, feedback_id=record["id"], action="approve", classes=CLASSES)
    runner = CliRunner()
    merged = runner.invoke(app, ["data", "merge-feedback", "shapes", "--json"])
    assert merged.exit_code == 0, merged.output
    assert json.loads(merged.stdout)["added"] == 1
    again = runner.invoke(app, ["data", "merge-feedback", "shapes"])
    assert again.exit_code == 0 and "nothing new to merge" in again.output
    swept = runner.invoke(app, ["feedback", "sweep", "--keep-days", "30", "--json"])
    assert swept.exit_code == 0 and json.loads(swept.stdout) == {
        "deleted_uploads": 0, "deleted_files": 0, "keep_days": 30.0, "orphan_files": 0, "rows_without_file": 0}
    missing = runner.invoke(app, ["data", "merge-feedback", "no-such-dataset"])
    assert isinstance(missing.exception, NotFound) and "no-such-dataset" in missing.exception.message


def test_feedback_on_another_datasets_model_is_never_merged(shapes, engine, home):
    """Two datasets sharing class ids: feedback given on dataset B's model stays out of dataset A."""
    store = PhotoStore(home.uploads, engine)
    pid = answered(engine, store, seed=7, dataset="other-shapes")
    service.review(engine, feedback_id=give(engine, pid, label="square"), action="approve", classes=CLASSES)
    assert merge_feedback("shapes", workspace=home, engine=engine)["version"] is None
    ours = answered(engine, store, seed=8)  # and one on this dataset's model is merged
    service.review(engine, feedback_id=give(engine, ours, label="square"), action="approve", classes=CLASSES)
    assert merge_feedback("shapes", workspace=home, engine=engine)["added"] == 1
