"""Serving fixtures: a real (tiny) ONNX model in a real bundle, and clients for the app.

The model is global average pooling + a linear layer over the three colour channels, so a reddish
photo is "red", and so on: a real ONNX graph run by ONNX Runtime, small enough for every test."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image

from snapid.config import Settings
from snapid.export.bundle import write_bundle
from snapid.serve.app import create_app
from tests.conftest import encode

SIZE = 32
CLASSES = [{"index": 0, "id": "red", "name": "Red thing", "display_names": {"ko": "빨강"}},
           {"index": 1, "id": "green", "name": "Green thing", "display_names": {}},
           {"index": 2, "id": "blue", "name": "Blue thing", "display_names": {}}]
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
ADMIN_TOKEN = "s3cret-admin-t0ken"  # tokens shorter than 16 characters are refused at startup


def tiny_onnx(scale: float = 4.0, n_classes: int = 3) -> bytes:
    """images N x 3 x S x S → GlobalAveragePool → Flatten → Gemm → logits N x C."""
    weight = np.zeros((n_classes, 3), dtype=np.float32)
    weight[np.arange(min(3, n_classes)), np.arange(min(3, n_classes))] = scale
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1)],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel()),
                     helper.make_tensor("b", TensorProto.FLOAT, (n_classes,), np.zeros(n_classes, np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def bundle_files(*, model: bytes | None = None, threshold: float = 0.0, temperature: float = 1.0,
                 size: int = SIZE) -> dict[str, bytes]:
    return {"model.onnx": model if model is not None else tiny_onnx(),
            "labels.json": json.dumps({"classes": CLASSES}).encode(),
            "preprocess.json": json.dumps({"size": size, "resize": "crop", "mean": MEAN, "std": STD,
                                           "crop_boxes": False, "pad": 0.1}).encode(),
            "calibration.json": json.dumps({"temperature": temperature, "threshold": threshold}).encode(),
            "card.md": b"# tiny colour model\nFor tests.\n"}


def make_bundle(path: Path, *, version: str = "1", **kw) -> Path:
    write_bundle(path, bundle_files(**kw), info={"name": "colours", "version": version})
    return path


def coloured(rgb: tuple[int, int, int], size=(64, 48), fmt: str = "JPEG", mode: str = "RGB", **kw) -> bytes:
    """A photo mostly of one colour, with some texture."""
    rng = np.random.default_rng(sum(rgb))
    arr = np.clip(np.array(rgb)[None, None, :] + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    return encode(im.convert(mode) if mode != "RGB" else im, fmt, **kw)


RED = (220, 40, 40)
GREEN = (40, 200, 60)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundles" / "colours")


@pytest.fixture
def settings(home) -> Settings:
    return Settings(home=home.home, reload_poll_s=0.1, admin_token=ADMIN_TOKEN, drain_s=0.2)


@pytest.fixture
def client(settings, bundle):
    with TestClient(create_app(settings, bundle=bundle), raise_server_exceptions=False) as c:
        yield c


def files(*photos: bytes, name: str = "photo.jpg", field: str = "files") -> list:
    return [(field, (name, p, "image/jpeg")) for p in photos]


@asynccontextmanager
async def running(app):
    """An httpx client on the app in this event loop, with the lifespan run (concurrency tests)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c
