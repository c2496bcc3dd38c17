"""Detector fixtures: a real torchvision detector (the registry's pretrained MobileNetV2 backbone, heads
drawn at random with a fixed seed so scores spread out instead of tying), and a tiny hand-made ONNX
detector that reports two fixed boxes scaled by the photo's brightest pixel (a black photo: nothing)."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

SIZE = 128


def spread_heads(model, seed: int = 1, scale: float = 0.1):
    """Redraw the RPN and box heads so a fresh detector gives distinct scores (real training does this)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for part, s in ((model.rpn.head, scale), (model.roi_heads.box_predictor, scale / 2),
                        (model.roi_heads.box_head, scale / 5)):
            for p in part.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * s)
    return model.eval()


@pytest.fixture(scope="session")
def torch_detector():
    import torch

    from snapid.detect.models import build_detector

    torch.manual_seed(0)
    return spread_heads(build_detector("fasterrcnn", 2, pretrained_backbone=True, size=SIZE))


def squares_photo(size=(200, 120), fmt: str = "PNG", boxes=((20, 20, 70, 70), (110, 40, 170, 100)),
                  colours=((220, 40, 40), (40, 200, 60))) -> bytes:
    """A grey photo with coloured squares at ``boxes`` (x1, y1, x2, y2)."""
    rng = np.random.default_rng(0)
    arr = np.full((size[1], size[0], 3), 128, np.int16) + rng.integers(-6, 6, (size[1], size[0], 3))
    for (x1, y1, x2, y2), rgb in zip(boxes, colours, strict=True):
        arr[y1:y2, x1:x2] = rgb
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def fixed_box_detector(boxes_s: np.ndarray, scores: list[float], size: int) -> bytes:
    """image 3 x S x S → boxes (the given ones, S x S frame), scores x max(image), labels 1."""
    k = len(scores)
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
         helper.make_node("Mul", ["base_scores", "peak"], ["scores"]),
         helper.make_node("Identity", ["base_boxes"], ["boxes"]),
         helper.make_node("Identity", ["base_labels"], ["labels"])],
        "fixed_boxes", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, size, size])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["K"]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, ["K"])],
        initializer=[helper.make_tensor("base_scores", TensorProto.FLOAT, (k,), np.asarray(scores, np.float32)),
                     helper.make_tensor("base_boxes", TensorProto.FLOAT, (k, 4),
                                        np.asarray(boxes_s, np.float32).ravel()),
                     helper.make_tensor("base_labels", TensorProto.INT64, (k,), np.ones(k, np.int64))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
