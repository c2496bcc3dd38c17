"""Reference photos in a bundle (issue 20): per class, up to N training photos as small thumbnails with the
embedding the served graph gives them, so an answer can show the photos nearest to the query.

Files (all optional, listed and hashed in manifest.json like every other file):
  references.json  {"format": 1, "dim", "per_class", "thumb_px",
                    "items": [{"id", "class", "offset", "bytes"}]}: one entry per photo, in index order
  references.npy   float16 N x D: the L2-normalised "embedding" output of model.onnx for each photo
  references.jpg   the thumbnails (JPEG, at most THUMB_PX a side), concatenated; items give offset and bytes
  references_held_out.npy  float16 M x D: the raw "embedding" of up to HELD_OUT_PER_CLASS validation photos a
                   class (photos the head was not fitted on), their classes in references.json "held_out";
                   `snapid add-class` scales a new class's row on them (snapid/export/add_class.py)

The photos are chosen to cover the class, not the first N: among up to POOL_FACTOR x N training photos of
the class (a seeded sample), the one nearest the class mean first (the most typical), then greedily the one
farthest (in cosine) from every photo chosen so far (farthest-point sampling, the k-center greedy rule), so
the references span the class's looks: angles, backgrounds, growth stages. Near-duplicates are never chosen.
The embeddings are computed by ONNX Runtime on the exported graph itself (int8 too), from the prepared
cache's images, so a query photo and a reference are compared in the same space.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from snapid.export.onnx import EMBEDDING, INPUT, ExportError, ParityError, normalized

JSON, EMBEDDINGS, THUMBS = "references.json", "references.npy", "references.jpg"
HELD_OUT = "references_held_out.npy"
FILES = (JSON, EMBEDDINGS, THUMBS, HELD_OUT)
HELD_OUT_PER_CLASS = 10
DEFAULT_PER_CLASS = 20
MAX_PER_CLASS = 100
POOL_FACTOR = 4             # candidates examined per class: POOL_FACTOR x N, a seeded sample (export time)
THUMB_PX = 112              # shown at 56 CSS px: sharp on a 2x screen
THUMB_QUALITY = 80
DUPLICATE_COSINE = 0.999    # a candidate this close to a chosen photo adds nothing
EMBEDDING_TOLERANCE = 1e-3  # max |e_onnx - e_torch| / max |e_torch| over the parity images
BATCH = 32
FORMAT_VERSION = 1


class WithEmbedding(nn.Module):
    """A classifier (backbone → pooled features → head) returning (logits, pooled features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features(x)
        return self.model.head(features), features


def with_embedding(module: nn.Module) -> nn.Module | None:
    """``module`` wrapped to output its pooled embedding too, or None when it has none to give (an ensemble:
    its members' features live in different spaces)."""
    if callable(getattr(module, "features", None)) and isinstance(getattr(module, "head", None), nn.Module):
        return WithEmbedding(module).eval()
    return None


def has_embedding(session) -> bool:
    return EMBEDDING in {o.name for o in session.get_outputs()}


def embeddings(session, inputs: np.ndarray) -> np.ndarray:
    """The graph's float32 N x D embeddings for normalised inputs, BATCH at a time."""
    parts = [session.run([EMBEDDING], {INPUT: inputs[i:i + BATCH]})[0] for i in range(0, len(inputs), BATCH)]
    return np.concatenate(parts).reshape(len(inputs), -1).astype(np.float32)


@torch.no_grad()
def check_embedding_parity(session, module: nn.Module, inputs: np.ndarray, *, where: str) -> dict:
    """The graph's embedding output against the torch module's pooled features on the parity images;
    ParityError beyond EMBEDDING_TOLERANCE (relative to the largest feature)."""
    got = embeddings(session, inputs)
    want = module.eval().features(torch.from_numpy(inputs)).double().numpy().reshape(len(inputs), -1)
    scale = max(float(np.abs(want).max()), 1e-12)
    worst = float(np.abs(got - want).max()) / scale if np.isfinite(got).all() else float("inf")
    if not worst <= EMBEDDING_TOLERANCE:
        raise ParityError(f"{where}: the exported embedding does not match torch: max relative difference "
                          f"{worst:.3g} > {EMBEDDING_TOLERANCE:g}; nothing was written")
    return {"max_rel_diff": worst, "tolerance": EMBEDDING_TOLERANCE}


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def cover(points: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` rows of unit-norm ``points`` that cover them: the one nearest the mean first, then each
    time the one least similar to all chosen so far; stops early when only near-duplicates are left."""
    if len(points) == 0 or n <= 0:
        return []
    chosen = [int(np.argmax(points @ unit(points.mean(axis=0, keepdims=True))[0]))]
    nearest = points @ points[chosen[0]]          # each point's similarity to its nearest chosen one
    while len(chosen) < min(n, len(points)):
        candidate = int(np.argmin(nearest))
        if nearest[candidate] >= DUPLICATE_COSINE:
            break
        chosen.append(candidate)
        nearest = np.maximum(nearest, points @ points[candidate])
    return chosen


def _thumbnail(image_chw: np.ndarray) -> bytes:
    im = Image.fromarray(np.ascontiguousarray(np.asarray(image_chw).transpose(1, 2, 0)), "RGB")
    im.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def build_index(session, dataset, preprocess: dict, classes: list[dict], *, per_class: int = DEFAULT_PER_CLASS,
                seed: int = 0, say: Callable[[str], None] | None = None, held_out=None) -> dict[str, bytes]:
    """references.json / .npy / .jpg for the bundle, from the training split ``dataset`` (a CachedDataset:
    uint8 images and labels) and the exported graph's ``session``; {} when ``per_class`` is 0. ``held_out``:
    the validation split, whose embeddings go to references_held_out.npy (when it has photos)."""
    if per_class <= 0:
        return {}
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise ExportError(f"--references {per_class}: expected 0 (none) to {MAX_PER_CLASS} photos per class",
                          code="usage")
    if not has_embedding(session):
        raise ExportError(f"the exported graph has no {EMBEDDING!r} output; reference photos need one")
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    items, vectors, thumbs, offset = [], [], [], 0
    for index, _ in enumerate(classes):
        rows = np.flatnonzero(labels == index)
        if len(rows) > POOL_FACTOR * per_class:
            rows = np.sort(rng.choice(rows, POOL_FACTOR * per_class, replace=False))
        if len(rows) == 0:
            continue
        images, _ = dataset.__getitems__([int(r) for r in rows])
        points = unit(embeddings(session, normalized(images, preprocess)))
        for row in cover(points, per_class):
            jpeg = _thumbnail(images[row].numpy())
            ident = hashlib.sha256(f"{classes[index]['id']}\0".encode() + jpeg).hexdigest()[:24]
            items.append({"id": ident, "class": index, "offset": offset, "bytes": len(jpeg)})
            vectors.append(points[row])
            thumbs.append(jpeg)
            offset += len(jpeg)
        if say and (index + 1) % 50 == 0:
            say(f"references: {index + 1}/{len(classes)} classes")
    if not items:
        return {}
    matrix = np.stack(vectors).astype(np.float16)
    buf = io.BytesIO()
    np.save(buf, matrix, allow_pickle=False)
    doc = {"format": FORMAT_VERSION, "dim": int(matrix.shape[1]), "per_class": per_class, "thumb_px": THUMB_PX,
           "items": items}
    files = {EMBEDDINGS: buf.getvalue(), THUMBS: b"".join(thumbs)}
    if held_out is not None and len(held_out):
        vectors, labels = held_out_embeddings(session, held_out, preprocess, seed=seed)
        buf = io.BytesIO()
        np.save(buf, vectors.astype(np.float16), allow_pickle=False)
        files[HELD_OUT] = buf.getvalue()
        doc["held_out"] = {"per_class": HELD_OUT_PER_CLASS, "classes": [int(c) for c in labels]}
    return {JSON: json.dumps(doc, separators=(",", ":")).encode(), **files}


def held_out_embeddings(session, dataset, preprocess: dict, *, per_class: int = HELD_OUT_PER_CLASS,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw embeddings (float32 M x D) and classes of up to ``per_class`` photos a class of ``dataset`` (a
    seeded sample), in class order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        chosen.extend(np.sort(rng.choice(rows, per_class, replace=False)) if len(rows) > per_class else rows)
    vectors = [embeddings(session, normalized(dataset.__getitems__([int(r) for r in chosen[i:i + BATCH]])[0],
                                              preprocess))
               for i in range(0, len(chosen), BATCH)]
    return np.concatenate(vectors), labels[np.asarray(chosen, dtype=np.int64)]


def bound_bytes(classes: int, per_class: int, dim: int) -> int:
    """An upper bound of the index's size: thumbnails (a JPEG of THUMB_PX² pixels stays under 1.5 bytes a
    pixel at quality 80), float16 embeddings, and about 80 bytes of JSON per photo; the held-out slice's float16
    embeddings and a few bytes of JSON each."""
    return classes * per_class * (int(1.5 * THUMB_PX * THUMB_PX) + 2 * dim + 80) + \
        classes * HELD_OUT_PER_CLASS * (2 * dim + 8) + 512


def summary(files: dict[str, bytes]) -> dict:
    """For the manifest and the export's message: photos, classes covered, bytes added."""
    if not files:
        return {"photos": 0, "classes": 0, "bytes": 0}
    doc = json.loads(files[JSON])
    return {"photos": len(doc["items"]), "classes": len({i["class"] for i in doc["items"]}),
            "per_class": doc["per_class"], "dim": doc["dim"], "bytes": sum(len(d) for d in files.values()),
            "held_out": len(doc.get("held_out", {}).get("classes", []))}
