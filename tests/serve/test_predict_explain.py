"""predict?explain=true (issue 19): a heatmap per photo from the graph's "cam" output, with no torch on the server;
a clear 409 explain_unavailable from a bundle that cannot explain."""

from __future__ import annotations

import base64
import io

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image

from snapid.export.bundle import write_bundle
from snapid.serve.app import create_app
from tests.conftest import encode
from tests.serve.conftest import RED, SIZE, bundle_files, coloured, files

CELL = 8   # the tiny graph's map: 4 x 4 cells of 8 x 8 input pixels


def cam_onnx(scale: float = 4.0) -> bytes:
    """A real CAM graph: a 1x1 conv gives every pixel's class scores, averaged into 4 x 4 cells ("cam"); the logits are
    their mean (global average pooling), so the map is exactly each cell's share of the logit."""
    weight = (np.eye(3, dtype=np.float32) * scale).reshape(3, 3, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "W"], ["scores"]),
         helper.make_node("AveragePool", ["scores"], ["cam"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
         helper.make_node("GlobalAveragePool", ["cam"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["logits"], axis=1)],
        "tiny-cam", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", 3, SIZE // CELL, SIZE // CELL])],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


EXPLAIN = {"available": True, "method": "cam", "output": "cam", "grid": [SIZE // CELL, SIZE // CELL]}


@pytest.fixture
def explaining(tmp_path, settings):
    path = tmp_path / "cam-bundle"
    write_bundle(path, bundle_files(model=cam_onnx()), info={"name": "colours", "version": "1", "explain": EXPLAIN})
    with TestClient(create_app(settings, bundle=path)) as c:
        yield c


def planted(row: int, col: int, size: int = 64, seed: int = 0) -> bytes:
    """A grey, noisy 64 x 64 photo with a red square filling grid cell (row, col) of the 32 px model input."""
    rng = np.random.default_rng(seed)
    arr = np.clip(128 + rng.integers(-25, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    side = size // (SIZE // CELL)
    arr[row * side:(row + 1) * side, col * side:(col + 1) * side] = RED
    return encode(Image.fromarray(arr), "PNG")


def test_model_info_says_whether_explain_is_available(explaining, client):
    assert explaining.get("/api/v1/model").json()["explain"] is True
    assert client.get("/api/v1/model").json()["explain"] is False


@pytest.mark.parametrize(("row", "col"), [(0, 0), (2, 1), (3, 3)])
def test_the_heatmap_peak_lands_on_the_planted_object(explaining, row, col):
    r = explaining.post("/api/v1/predict?explain=true", files=files(planted(row, col), name="p.png"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"][0]["id"] == "red"
    [heat] = body["explain"]
    assert heat["photo"] == 0 and heat["class_id"] == "red" and heat["class_index"] == 0 and heat["resize"] == "crop"
    grid = np.array(heat["grid"])
    assert grid.shape == (4, 4) and grid.min() == 0.0 and grid.max() == 1.0
    assert heat["peak"] == [row, col] and np.unravel_index(grid.argmax(), grid.shape) == (row, col)
    assert heat["overlay"].startswith("data:image/png;base64,")
    overlay = Image.open(io.BytesIO(base64.b64decode(heat["overlay"].split(",", 1)[1])))
    assert overlay.format == "PNG" and overlay.mode == "RGBA" and overlay.size == (4 * 4, 4 * 4)
    alpha = np.asarray(overlay)[..., 3]  # more opaque where the evidence is stronger: at the planted square
    assert np.unravel_index(alpha.argmax(), alpha.shape)[0] // 4 == row


def test_without_explain_the_answer_has_no_heatmaps_and_the_same_scores(explaining):
    photo = planted(1, 2)
    plain = explaining.post("/api/v1/predict", files=files(photo, name="p.png")).json()
    explained = explaining.post("/api/v1/predict?explain=true", files=files(photo, name="p.png")).json()
    assert plain["explain"] is None
    assert [p["score"] for p in plain["predictions"]] == [p["score"] for p in explained["predictions"]]


def test_each_photo_gets_its_own_heatmap(explaining):
    r = explaining.post("/api/v1/predict?explain=true&mode=each",
                        files=files(planted(0, 3), planted(3, 0, seed=1), name="p.png"))
    assert r.status_code == 200, r.text
    heats = r.json()["explain"]
    assert [h["photo"] for h in heats] == [0, 1] and [h["peak"] for h in heats] == [[0, 3], [3, 0]]
    same = explaining.post("/api/v1/predict?explain=true", files=files(planted(0, 3), coloured(RED), name="p.png"))
    assert [h["photo"] for h in same.json()["explain"]] == [0, 1]  # mode=same: one per photo, for the combined class


def test_explain_on_a_bundle_without_maps_is_a_clear_409(client):
    r = client.post("/api/v1/predict?explain=true", files=files(coloured(RED)))
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "explain_unavailable" and "not available for this bundle" in body["message"]
    assert client.post("/api/v1/predict", files=files(coloured(RED))).status_code == 200  # without explain: fine


def test_a_manifest_that_promises_maps_the_graph_lacks_is_refused(tmp_path, settings):
    from snapid.export.bundle import BundleError
    from snapid.serve.services.model import load_model

    path = tmp_path / "liar"
    write_bundle(path, bundle_files(), info={"name": "colours", "version": "1", "explain": EXPLAIN})
    with pytest.raises(BundleError, match="no 'cam' output"):
        load_model(path)
