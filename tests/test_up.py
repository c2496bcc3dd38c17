"""`snapid up PHOTOS` as a newcomer runs it: from a folder to a bundle (--no-serve --json), then again to
the served page, reusing the import, the run and the bundle; leakage stops it; a crashed run is resumed;
and the Python API (snapid.import_dataset → snapid.fit → Run.export → snapid.load) end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from snapid.pipeline import _recipe_key, _run_to_use, default_name
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train.config import TrainConfig
from tests.helpers import TINY_TRAIN, free_port, shapes_dataset
from tests.webapp.test_demo import snapid_command

pytestmark = pytest.mark.slow
BUDGET = "20s"   # the planner still measures and picks a pretrained backbone; about a minute in all here


def up_env(home: Path) -> dict:
    env = {**os.environ, "SNAPID_HOME": str(home), "SNAPID_DRAIN_S": "0.2", "COLUMNS": "200"}
    env.pop("SNAPID_DB_URL", None)
    return env


def test_up_to_a_bundle_then_to_the_served_page_reusing_everything(tmp_path):
    photos = shapes_dataset(tmp_path / "my-shapes", per_class=20)
    home = tmp_path / "home"
    done = subprocess.run(snapid_command() + ["up", str(photos), "--budget", BUDGET, "--no-serve", "--json"],
                          capture_output=True, text=True, env=up_env(home), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)  # stdout holds the JSON object and nothing else
    assert result["dataset"] == "my-shapes" and result["version"] == 1
    assert Path(result["bundle"]).is_dir() and (Path(result["bundle"]) / "model.onnx").is_file()
    assert result["run"].startswith("my-shapes-v1-up-")
    assert set(result["metrics"]) == {"val", "test"} and result["metrics"]["test"] >= 0.8
    calibration = json.loads((Path(result["bundle"]) / "calibration.json").read_text())
    assert 0 < result["threshold"] == calibration["threshold"] < 1  # calibrated: the server can say "not sure"
    assert result["reused"] == {"import": False, "train": False, "export": False}

    port = free_port()
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        served = subprocess.Popen(snapid_command() + ["up", str(photos), "--budget", BUDGET, "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=up_env(home))
    try:
        deadline = time.monotonic() + 300
        while True:
            assert served.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        said = " ".join(log.read_text().split())
        assert "the same photos as before: reused" in said and "already trained" in said and "intact: reused" in said
        assert f"serving the identification page: http://127.0.0.1:{port}/" in said and "QR hand-off" in said
        photo = photos / "disc" / "3.png"
        answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/predict", timeout=30,
                            files=[("files", ("3.png", photo.read_bytes(), "image/png"))]).json()
        assert answer["predictions"][0]["id"] == "disc" and answer["threshold"] == result["threshold"]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        served.send_signal(signal.SIGTERM)
        code = served.wait(timeout=60)
    assert code == 0 and "Traceback" not in log.read_text()


def test_leakage_between_splits_stops_up_unless_forced(tmp_path):
    flat = shapes_dataset(tmp_path / "flat", per_class=6)
    photos = tmp_path / "leaky"
    for split in ("train", "val", "test"):
        for label in ("disc", "square", "stripes"):
            (photos / split / label).mkdir(parents=True)
            for i in range(2):
                shutil.copy(flat / label / f"{i}.png", photos / split / label / f"{split}{i}.png")
    done = subprocess.run(snapid_command() + ["up", str(photos), "--no-serve"], capture_output=True, text=True,
                          env=up_env(tmp_path / "home"), timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "more than one split" in done.stderr and "--force" in done.stderr and "leaky-inspect.html" in done.stderr


def test_a_completed_run_is_reused_and_a_crashed_one_resumed(engine, home):
    config = TrainConfig(budget="10m")
    base = f"pets-v1-up-{_recipe_key(config)}"
    assert _run_to_use("pets", 1, config, engine=engine, workspace=home) == (None, None)
    with transaction(engine) as s:
        track.create_run(s, name=base, dataset="pets", dataset_version=1, model="m", config={},
                         run_dir=str(home.runs / base), monitor="val_loss")
        track.finish_run(s, name=base, status="failed", error="killed")
    assert _run_to_use("pets", 1, config, engine=engine, workspace=home) == (None, None)  # no checkpoint: start again
    (home.runs / base).mkdir(parents=True)
    (home.runs / base / "last.json").write_text("{}")
    assert _run_to_use("pets", 1, config, engine=engine, workspace=home) == (None, base)  # resume it
    with transaction(engine) as s:
        track.create_run(s, name=base + "-2", dataset="pets", dataset_version=1, model="m", config={},
                         run_dir=str(home.runs / (base + "-2")), monitor="val_loss")
        track.finish_run(s, name=base + "-2", status="completed", summary={"val_top1": 1.0})
    assert _run_to_use("pets", 1, config, engine=engine, workspace=home) == (base + "-2", None)
    # another dataset version or another budget is another recipe
    assert _run_to_use("pets", 2, config, engine=engine, workspace=home) == (None, None)
    assert _run_to_use("pets", 1, TrainConfig(budget="1h"), engine=engine, workspace=home) == (None, None)


def test_default_names(tmp_path):
    assert default_name(tmp_path / "My Plants") == "My-Plants"
    (tmp_path / "shop photos.zip").write_bytes(b"PK")
    assert default_name(tmp_path / "shop photos.zip") == "shop-photos"
    (tmp_path / "birds.tar.bz2").write_bytes(b"BZh")
    assert default_name(tmp_path / "birds.tar.bz2") == "birds"
    (tmp_path / "labels.csv").write_text("path,label\n")
    assert default_name(tmp_path / "labels.csv") == "labels"
    assert default_name(Path("/")) == "photos"


def test_python_api_import_fit_export_load_predict(tmp_path, monkeypatch):
    import snapid

    monkeypatch.setenv("SNAPID_HOME", str(tmp_path / "home"))
    photos = shapes_dataset(tmp_path / "shapes", per_class=10)
    ds = snapid.import_dataset(photos)
    assert (ds.name, ds.version, ds.classes) == ("shapes", 1, 3)
    assert snapid.import_dataset(photos).version == 1  # the same photos: the same version
    tiny = {k: v for k, v in TINY_TRAIN.items() if k not in ("model",)}
    run = snapid.fit(ds, model="custom_cnn", budget="none", **tiny)
    assert run.name.startswith("shapes-custom_cnn") and run.path.is_dir() and "val_top1" in run.metrics
    assert run.calibration is not None and run.calibration["threshold"] > 0
    bundle = run.export("shapes-v1", int8=False)
    assert bundle.path == tmp_path / "home" / "bundles" / "shapes-v1" and not bundle.int8
    assert snapid.load("shapes-v1").path == snapid.load(bundle).path == bundle.path  # by name, as the README shows
    model = snapid.load(run.name)  # a run name: its newest bundle
    answers = model.predict([photos / "disc" / "0.png", photos / "square" / "0.png", tmp_path / "missing.jpg"])
    assert [a.error is None for a in answers] == [True, True, False]
    assert all(0 <= a.score <= 1 and a.top for a in answers[:2])
