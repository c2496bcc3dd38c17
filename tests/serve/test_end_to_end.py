"""No train/serve skew, and a real trained run served end to end after `export_run`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snapid import images
from snapid.data.cache import Item, PrepareParams, render_item
from snapid.serve.services.preprocess import PreprocessSpec, decode_for_model
from tests.conftest import encode, photo
from tests.serve.conftest import files


def test_serving_normalises_exactly_as_training_did():
    """The lookup table gives bit for bit what (x / 255 - mean) / std in float32 gave."""
    from snapid.serve.services.preprocess import normalise

    spec = PreprocessSpec(8, "crop", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    items = (np.arange(2 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(2, 8, 8, 3)
    x = items.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= np.asarray(spec.mean, np.float32)
    x /= np.asarray(spec.std, np.float32)
    out = normalise(items, spec)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, x.transpose(0, 3, 1, 2)) and np.array_equal(normalise(items[1], spec)[0], out[1])


@pytest.mark.parametrize("size, resize, fmt", [(32, "crop", "JPEG"), (64, "letterbox", "PNG"), (224, "crop", "JPEG")])
def test_serving_input_is_the_training_item(tmp_path, size, resize, fmt):
    """The same photo gives the same uint8 pixels whether prepared for training or uploaded."""
    path = tmp_path / f"p.{fmt.lower()}"
    path.write_bytes(encode(photo((1200, 900), seed=3), fmt, **({"quality": 90} if fmt == "JPEG" else {})))
    w, h = Image.open(path).size
    trained = render_item(path, Item("k", str(path), w, h, None), PrepareParams(size=size, resize=resize),
                          images.DEFAULT_LIMITS)
    served = decode_for_model(path.read_bytes(), PreprocessSpec(size, resize, (0.5,) * 3, (0.25,) * 3),
                              images.DEFAULT_LIMITS)
    assert np.array_equal(trained, served)


def test_exported_run_is_served_with_the_same_scores_as_torch(make_run, home, engine, settings, tmp_path):
    import torch
    from fastapi.testclient import TestClient

    from snapid.evaluate.loaded import load_trained
    from snapid.export.from_run import export_run
    from snapid.serve.app import create_app
    from snapid.serve.services.preprocess import normalise

    make_run("served")
    bundle = export_run("served", workspace=home, engine=engine)
    picture = next(Path(tmp_path / "shapes" / "disc").glob("*.png")).read_bytes()
    with TestClient(create_app(settings, bundle=bundle.path)) as client:
        body = client.post("/api/v1/predict?k=3", files=files(picture)).json()
    trained = load_trained("served", engine=engine)
    spec = PreprocessSpec.from_bundle(bundle.preprocess)
    x = normalise(decode_for_model(picture, spec, images.DEFAULT_LIMITS), spec)
    with torch.no_grad():
        logits = trained.model(torch.from_numpy(x)).numpy()[0]
    probs = np.exp(logits / bundle.calibration.get("temperature", 1.0))
    probs /= probs.sum()
    served = {p["index"]: p["score"] for p in body["predictions"]}
    assert body["model"]["sha256"] == bundle.sha256
    assert all(abs(served[i] - probs[i]) < 1e-4 for i in served)
