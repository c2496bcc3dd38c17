"""A tiny detector on the demo's multi-pill photos: tracking rows, checkpoints, resume, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snapid.detect.evaluate import evaluate_detector
from snapid.detect.loaded import load_detector
from snapid.detect.train import train_detector
from snapid.errors import SnapidError
from snapid.track import runs as track
from snapid.track.db import transaction

TINY = dict(size=128, batch_size=4, patience=10, augment="light", seed=0)


class Epochs:
    """A Reporter that keeps the epoch records."""

    def __init__(self, stop_after: int | None = None):
        self.records, self.notes, self.stop_after = [], [], stop_after

    def phase(self, title, total):
        pass

    def progress(self, done, total, images_per_s=None):
        pass

    def epoch(self, record):
        self.records.append(record)
        if record["epoch"] == self.stop_after:
            raise KeyboardInterrupt   # Ctrl-C once this epoch is saved and tracked

    def note(self, text):
        self.notes.append(text)


@pytest.mark.slow
def test_train_track_resume_and_evaluate(pills, home, engine):
    first = Epochs(stop_after=1)
    # Ctrl-C after two of three epochs; then --resume finishes the third
    with pytest.raises(KeyboardInterrupt):
        train_detector(pills, workspace=home, engine=engine, epochs=3, name="det", reporter=first, **TINY)
    with transaction(engine) as s:
        assert track.get_run(s, name="det")["status"] == "stopped"
        rows = track.epochs(s, name="det")
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(r["phase"] == "detect" and r["val_loss"] is not None and r["top1"] is not None for r in rows)
    assert first.records[0]["train_loss"] > first.records[-1]["train_loss"]   # it learns

    with pytest.raises(SnapidError, match="already exists"):
        train_detector(pills, workspace=home, engine=engine, epochs=1, name="det", **TINY)
    config = json.loads((Path(home.runs) / "det" / "last.json").read_text())["config"]
    resumed = Epochs()
    summary = train_detector("", workspace=home, engine=engine, resume="det", reporter=resumed)
    assert any("resuming det at epoch 2" in n for n in resumed.notes)
    assert [r["epoch"] for r in resumed.records] == [2]
    assert summary["name"] == "det" and {"best_epoch", "val_map50", "val_map", "parameters"} <= set(summary)

    with transaction(engine) as s:
        run = track.get_run(s, name="det")
        kinds = {a["kind"] for a in track.artifacts(s, name="det")}
    assert (run["kind"], run["status"], run["model"], run["monitor"]) == ("detect", "completed",
                                                                          "fasterrcnn_mobilenet_v2", "val_map50")
    assert run["config"] == config and "checkpoint_best" in kinds

    model, meta = load_detector("det", engine=engine)
    assert meta["classes"] == ["object"] and meta["class_agnostic"] and meta["size"] == 128
    assert meta["letterbox"] and meta["pad"] == 0.1 and meta["normalizes_input"]
    out = model([torch.rand(3, 128, 128)])[0]
    assert set(out) == {"boxes", "scores", "labels"}

    result = evaluate_detector("det", workspace=home, engine=engine, split="train", score_threshold=0.05)
    assert {"map50", "map", "map75", "per_class_ap50", "per_class_ap", "at_threshold", "gallery"} <= set(result)
    assert result["n"] > 20 and result["objects"] > result["n"]
    pr = result["at_threshold"]["overall"]
    assert pr["tp"] + pr["fn"] == result["objects"]
    assert all(g["thumbnail"].startswith("data:image/jpeg;base64,") for g in result["gallery"])
    stored = json.loads((Path(home.runs) / "det" / "detect-eval-train.json").read_text())
    assert stored["map50"] == result["map50"]
    with transaction(engine) as s:
        meta_row = next(a for a in track.artifacts(s, name="det") if a["kind"] == "detect_eval_train")["meta"]
    assert meta_row["map50"] == result["map50"] and meta_row["score_threshold"] == 0.05


def test_bad_inputs_are_refused(pills, home, engine, make_run):
    with pytest.raises(SnapidError, match="unknown detector"):
        train_detector(pills, workspace=home, engine=engine, arch="yolo9000", **TINY)
    with pytest.raises(SnapidError, match="lr=0"):
        train_detector(pills, workspace=home, engine=engine, lr=0.0, **TINY)
    make_run("cls")
    with pytest.raises(SnapidError, match="not a detector"):
        load_detector("cls", engine=engine)
    with pytest.raises(SnapidError, match="no boxes"):
        train_detector("shapes", workspace=home, engine=engine, epochs=1, **TINY)


def test_every_arch_builds_and_rebuilds_from_its_config():
    from snapid.detect.models import ARCHS, build_detector, detector_config, detector_from_config

    for arch in ARCHS:
        model = build_detector(arch, 3, pretrained_backbone=False, size=96)
        clone = detector_from_config(detector_config(arch, 3, 96))
        clone.load_state_dict(model.state_dict())
        model.eval(), clone.eval()
        x = [torch.rand(3, 96, 96)]
        with torch.no_grad():
            assert torch.equal(model(x)[0]["scores"], clone(x)[0]["scores"])
        assert model.transform.min_size == (96,) and model.transform.max_size == 96


def test_unknown_and_yolo_models_are_refused_by_name():
    from snapid.detect.models import canonical_arch

    assert canonical_arch(" SSDLite ") == "ssdlite_mobilenet_v2"
    with pytest.raises(SnapidError, match="Ultralytics YOLO models are not supported") as caught:
        canonical_arch("yolo:yolov8n")
    assert caught.value.code == "unknown_model"
    with pytest.raises(SnapidError, match="unknown detector 'detr'"):
        canonical_arch("detr")


def test_detector_training_backs_off_on_gpu_out_of_memory(pills, home, engine, monkeypatch):
    """A (simulated) CUDA out-of-memory error on a training batch halves the batch and the epoch goes on from
    the same photo: every photo is still trained on, and the run completes."""
    from snapid.detect import train as detect_train

    calls = []

    def tight_builder(*args, **kwargs):
        model = build(*args, **kwargs)

        def refuse_big_batches(module, inputs):
            if module.training and len(inputs[0]) > 1:
                raise torch.cuda.OutOfMemoryError(f"simulated: {len(inputs[0])} photos do not fit")
            if module.training:
                calls.append(len(inputs[0]))
        model.register_forward_pre_hook(refuse_big_batches)
        return model

    build = detect_train.build_detector
    monkeypatch.setattr(detect_train, "build_detector", tight_builder)
    notes = Epochs()
    summary = train_detector(pills, workspace=home, engine=engine, epochs=1, name="tight", reporter=notes, **TINY)
    assert summary["name"] == "tight" and any("batch size halved to 1" in n for n in notes.notes)
    with transaction(engine) as s:
        trained_on = track.get_run(s, name="tight")
    assert trained_on["status"] == "completed" and calls and set(calls) == {1}
