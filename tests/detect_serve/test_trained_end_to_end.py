"""A detector and a crop classifier, both trained by snapid on the same box dataset, exported into one
bundle (parity-checked) and served. One epoch of detector training scores every box under the
detector's own floor, so each photo takes the documented fallback: classified whole, and said so.
Boxes in photo pixels are covered with a hand-made ONNX detector in test_two_stage.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.detect.train import train_detector
from snapid.export.from_run import export_run
from snapid.serve.app import create_app
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from tests.detect.conftest import pills  # noqa: F401  (the fixture, shared with tests/detect)

pytestmark = pytest.mark.slow


def test_trained_detector_and_classifier_export_and_serve_together(pills, home, engine):  # noqa: F811
    train(pills, TrainConfig(model="custom_cnn", pretrained=False, size=32, crop="boxes", pad=0.15, probe_epochs=2,
                             finetune_epochs=0, batch_size=8), workspace=home, engine=engine, name="cls")
    train_detector(pills, workspace=home, engine=engine, epochs=1, size=128, batch_size=4, name="det")
    bundle = export_run("cls", workspace=home, engine=engine, detector="det")
    assert {"detector.onnx", "detector.json"} <= set(bundle.manifest["files"])
    spec = json.loads(bundle.file("detector.json").read_text())
    assert spec["pad"] == 0.15 and spec["size"] == 128  # crops as the classifier was trained, at the detector's size
    assert bundle.manifest["detector"]["run"] == "det"
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=pills)
    with TestClient(create_app(Settings(home=home.home, reload_poll_s=0), bundle=bundle.path)) as client:
        assert client.get("/healthz/ready").status_code == 200
        for sample in manifest.samples[:3]:
            data = (Path(manifest.root) / sample.path).read_bytes()
            answer = client.post("/api/v1/predict", files={"files": (sample.path, data, "image/jpeg")})
            body = answer.json()
            assert answer.status_code == 200, body
            assert body["mode"] == "detect" and body["objects"] == [] and body["fallback"] == "no_object_detected"
            assert body["predictions"][0]["id"] in {c["id"] for c in bundle.labels}
