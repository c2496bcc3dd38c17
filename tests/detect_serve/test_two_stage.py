"""Two-stage serving: a bundle with a classifier and a detector answers with one object per detected box
(box in original pixels, detector score, top-k, card), rules checked across the objects, a whole-photo
fallback when nothing is detected, crops identical to the prepared cache items, and no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from snapid import geometry, images
from snapid.config import Settings
from snapid.data.cache import Item, PrepareParams, render_item
from snapid.detect.geometry import letterbox_geometry, to_letterbox
from snapid.export.bundle import write_bundle
from snapid.serve.app import create_app
from snapid.serve.services.detector import detect_and_crop
from snapid.serve.services.model import load_model
from tests.detect_serve.conftest import fixed_box_detector, squares_photo
from tests.serve.conftest import bundle_files, files
from tests.webapp.conftest import KNOWLEDGE, RULE_MESSAGE

ROOT = Path(__file__).resolve().parents[2]
DET_SIZE, PAD = 64, 0.1
PHOTO_W, PHOTO_H = 200, 120
BOXES = [(20, 20, 70, 70), (110, 40, 170, 100)]     # red, green


def detector_spec(**kw) -> dict:
    return {"size": DET_SIZE, "letterbox": True, "score_threshold": 0.5, "nms_iou": 0.5, "class_agnostic": True,
            "classes": ["object"], "pad": PAD, "max_objects": 20, "run": "det", **kw}


def detector_bundle(path: Path, *, photo_size=(PHOTO_W, PHOTO_H), boxes=BOXES, onnx_bytes: bytes | None = None,
                    spec: dict | None = None) -> Path:
    """The colour classifier of tests/serve with knowledge, plus a detector that reports ``boxes`` of a
    photo of ``photo_size`` (mapped into its letterbox) with scores 0.9 and 0.8 times the brightest pixel."""
    layout = letterbox_geometry(*photo_size, DET_SIZE)
    files_ = {**bundle_files(), "knowledge.json": json.dumps(KNOWLEDGE).encode(),
              "detector.onnx": onnx_bytes or fixed_box_detector(to_letterbox(boxes, *layout), [0.9, 0.8][:len(boxes)],
                                                                DET_SIZE),
              "detector.json": json.dumps(spec or detector_spec()).encode()}
    write_bundle(path, files_, info={"name": "two-stage", "version": "1"})
    return path


@pytest.fixture
def client(home, tmp_path):
    app = create_app(Settings(home=home.home, reload_poll_s=0), bundle=detector_bundle(tmp_path / "bundles" / "det"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_every_object_gets_its_box_in_original_pixels_and_the_rules_span_them(client):
    answer = client.post("/api/v1/predict?lang=en", files=files(squares_photo(), name="p.png")).json()
    assert answer["mode"] == "detect" and answer["fallback"] is None and answer["photos"] == 1
    objects = answer["objects"]
    assert [o["predictions"][0]["id"] for o in objects] == ["red", "green"]
    for o, expected in zip(objects, BOXES, strict=True):
        assert o["box"] == pytest.approx(list(expected), abs=0.02)   # letterbox → original pixels, exactly
        assert o["photo"] == 0 and not o["unknown"]
    first, second = (o["detector_score"] for o in objects)  # 0.9 and 0.8 x the letterbox's brightest pixel
    assert 0.9 * 220 / 255 <= first <= 0.9 and second / first == pytest.approx(0.8 / 0.9, abs=1e-4)
    assert objects[0]["card"]["display_name"] == "Red pill" and objects[1]["card"]["display_name"] == "Green pill"
    assert len({o["prediction_id"] for o in objects}) == 2 and answer["prediction_id"] == objects[0]["prediction_id"]
    assert answer["predictions"] == objects[0]["predictions"]
    [warning] = answer["warnings"]
    assert warning["objects"] == [0, 1] and warning["message"] == RULE_MESSAGE["en"]
    assert warning["severity"] == "contraindicated"
    assert answer["timings_ms"]["decode"] > 0


def black_photo() -> bytes:
    from PIL import Image

    from tests.conftest import encode

    return encode(Image.new("RGB", (80, 60)), "PNG")


def test_with_nothing_detected_the_whole_photo_is_identified_and_flagged(client):
    answer = client.post("/api/v1/predict", files=files(black_photo(), name="dark.png")).json()
    assert answer["mode"] == "detect" and answer["objects"] == [] and answer["warnings"] == []
    assert answer["fallback"] == "no_object_detected"
    assert len(answer["predictions"]) == 3 and answer["prediction_id"]   # the whole photo, classified
    # a photo without objects next to one with: the objects come from the second, and no fallback
    both = client.post("/api/v1/predict", files=files(black_photo(), squares_photo(), name="p.png")).json()
    assert both["fallback"] is None and [o["photo"] for o in both["objects"]] == [1, 1]


def test_served_crops_equal_the_prepared_cache_items(tmp_path):
    """A large JPEG, so prepare and serving both take the JPEG draft path at box-dependent scales."""
    size, boxes = (1600, 960), [(160, 160, 560, 560), (880, 320, 1360, 800), (40, 700, 120, 900)]
    data = squares_photo(size=size, fmt="JPEG", boxes=boxes, colours=((220, 40, 40), (40, 200, 60), (40, 60, 220)))
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    model = load_model(detector_bundle(tmp_path / "b", photo_size=size, boxes=boxes[:2]))
    found = detect_and_crop(data, model.detector, model.spec, images.DEFAULT_LIMITS, "photo.jpg")
    assert len(found.detections) == 2 and found.crops.shape == (2, 32, 32, 3)
    params = PrepareParams(size=model.spec.size, resize=model.spec.resize, crop_boxes=True, pad=PAD)
    for detection, crop in zip(found.detections, found.crops, strict=True):
        region = geometry.padded_box(detection.box, PAD, *size)
        item = Item(key="k", path="photo.jpg", width=size[0], height=size[1], box=region)
        assert np.array_equal(crop, render_item(path, item, params, images.DEFAULT_LIMITS))
    assert found.inputs.shape == (2, 3, 32, 32) and found.inputs.dtype == np.float32


def test_a_bundle_with_a_real_exported_detector_serves(torch_detector, home, tmp_path):
    from snapid.export.detector import build_files, letterboxed

    photo = squares_photo()
    onnx_bytes, spec = build_files(torch_detector, {"size": 128, "score_threshold": 0.3}, [letterboxed(photo, 128)],
                                   run="det", pad=PAD)
    bundle = detector_bundle(tmp_path / "real", onnx_bytes=onnx_bytes, spec=spec)
    with TestClient(create_app(Settings(home=home.home, reload_poll_s=0), bundle=bundle)) as client:
        answer = client.post("/api/v1/predict", files=files(photo, name="p.png")).json()
    assert answer["mode"] == "detect" and 1 <= len(answer["objects"]) <= 20
    for o in answer["objects"]:
        x1, y1, x2, y2 = o["box"]
        assert 0 <= x1 < x2 <= PHOTO_W and 0 <= y1 < y2 <= PHOTO_H and o["detector_score"] >= 0.3


def test_two_stage_serving_imports_no_torch(home, tmp_path):
    bundle = detector_bundle(tmp_path / "det")
    photo = tmp_path / "p.png"
    photo.write_bytes(squares_photo())
    script = textwrap.dedent(f"""
        import json, sys
        from fastapi.testclient import TestClient
        from snapid.config import Settings
        from snapid.serve.app import create_app
        app = create_app(Settings(home={str(home.home)!r}), bundle={str(bundle)!r})
        with TestClient(app) as client:
            data = open({str(photo)!r}, "rb").read()
            answer = client.post("/api/v1/predict", files=[("files", ("p.png", data, "image/png"))]).json()
            heavy = sorted(m for m in ("torch", "torchvision", "timm", "kornia") if m in sys.modules)
        print(json.dumps({{"objects": len(answer["objects"]), "heavy": heavy}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"objects": 2, "heavy": []}


def test_a_detector_json_with_bad_values_is_refused(tmp_path):
    from snapid.export.bundle import BundleError

    with pytest.raises(BundleError, match="max_objects 500"):
        load_model(detector_bundle(tmp_path / "bad", spec=detector_spec(max_objects=500)))
