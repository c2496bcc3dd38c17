"""A tiny bundle with reference photos (issue 20), built without torch: the colour model of conftest with its
pooled channel means as the "embedding" output, and a hand-made index of plain-colour thumbnails."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from snapid.export.bundle import write_bundle
from tests.serve.conftest import MEAN, STD, bundle_files, tiny_onnx

# (class index, colour) of each reference photo: shades of each class's colour
REFERENCES = [(0, (220, 40, 40)), (0, (150, 30, 30)), (0, (250, 120, 120)), (0, (200, 80, 20)),
              (1, (40, 200, 60)), (1, (20, 120, 20)), (1, (120, 240, 140)),
              (2, (40, 40, 220)), (2, (30, 30, 120))]


def onnx_with_embedding() -> bytes:
    """conftest's tiny_onnx with "flat" (the pooled channel means) also output as "embedding"."""
    model = onnx.load_from_string(tiny_onnx())
    model.graph.node.append(helper.make_node("Identity", ["flat"], ["embedding"]))
    model.graph.output.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def colour_embedding(rgb) -> np.ndarray:
    """What the graph gives a photo of one colour: its normalised channel means."""
    return (np.array(rgb, dtype=np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)


def thumbnail(rgb) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), rgb).save(out, "JPEG", quality=80)
    return out.getvalue()


def reference_files(references=REFERENCES) -> dict[str, bytes]:
    items, vectors, blob = [], [], b""
    for cls, rgb in references:
        jpeg = thumbnail(rgb)
        ident = hashlib.sha256(f"{cls}\0".encode() + jpeg).hexdigest()[:24]
        items.append({"id": ident, "class": cls, "offset": len(blob), "bytes": len(jpeg)})
        vector = colour_embedding(rgb)
        vectors.append(vector / np.linalg.norm(vector))
        blob += jpeg
    buf = io.BytesIO()
    np.save(buf, np.stack(vectors).astype(np.float16), allow_pickle=False)
    doc = {"format": 1, "dim": 3, "per_class": 4, "thumb_px": 40, "items": items}
    return {"references.json": json.dumps(doc).encode(), "references.npy": buf.getvalue(), "references.jpg": blob}


def make_reference_bundle(path: Path, *, extra: dict | None = None, model: bytes | None = None, **kw) -> Path:
    files = {**bundle_files(model=model or onnx_with_embedding(), **kw), **reference_files(), **(extra or {})}
    write_bundle(path, files, info={"name": "colours", "version": "refs"})
    return path
