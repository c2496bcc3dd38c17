"""Reference photos for answers (issue 20): the bundle's references.json / .npy / .jpg (written by
snapid/export/references.py), read once when a model loads, searched with NumPy per answer.

The index is held in memory (a `.snapid` file's unpacked folder is removed once the model is loaded):
float32 unit vectors grouped by class, so the photos of one class are one contiguous slice and the
nearest ones to a query are a (rows x D) @ D product and an argpartition. Thumbnails are served by opaque
id (GET /api/v1/references/{id}); an id names content, so it may be cached for good."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from snapid.export.bundle import Bundle, BundleError

JSON, EMBEDDINGS, THUMBS = "references.json", "references.npy", "references.jpg"
NEAREST = 3
URL = "/api/v1/references/{id}"
MAX_ITEMS = 1_000_000
WHOLE_INDEX_FROM = 8      # classes asked for at once, above which one product over the whole index is cheaper


@dataclass(eq=False)
class ReferenceIndex:
    vectors: np.ndarray            # N x D float32, unit norm, rows grouped by class
    bounds: np.ndarray             # C + 1: class c's rows are bounds[c]:bounds[c + 1]
    ids: list[str]                 # per row
    thumbs: dict[str, bytes] = field(repr=False)
    row_class: np.ndarray = field(init=False, repr=False)  # per row: its class index

    def __post_init__(self) -> None:
        self.row_class = np.repeat(np.arange(len(self.bounds) - 1), np.diff(self.bounds))

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def nearest(self, query: np.ndarray, classes: list[int], k: int = NEAREST) -> list[list[dict]]:
        """For each class index in ``classes``: its ``k`` photos most similar (cosine) to the unit-norm
        ``query``, best first, as {"id", "url", "similarity"}; [] for a class with no photo."""
        out = []
        if len(classes) > WHOLE_INDEX_FROM:  # one product and one sort for many classes
            sims = self.vectors @ query
            order = np.lexsort((-sims, self.row_class))  # class blocks stay in place, each sorted best first
            rows = [order[int(self.bounds[c]):min(int(self.bounds[c]) + k, int(self.bounds[c + 1]))] for c in classes]
        else:
            rows = []
            for c in classes:
                a, b = int(self.bounds[c]), int(self.bounds[c + 1])
                part = self.vectors[a:b] @ query
                top = np.argpartition(-part, k - 1)[:k] if b - a > k else np.arange(b - a)
                rows.append(a + top[np.argsort(-part[top], kind="stable")])
            sims = None
        for picked in rows:
            values = sims[picked] if sims is not None else self.vectors[picked] @ query
            out.append([{"id": self.ids[i], "url": URL.format(id=self.ids[i]), "similarity": round(float(v), 4)}
                        for i, v in zip(picked.tolist(), values.tolist(), strict=True)])
        return out


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def combined(rows: np.ndarray) -> np.ndarray:
    """One query for several photos of one object: the normalised mean of their unit embeddings."""
    rows = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    return unit((rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)).mean(axis=0))


def load_index(bundle: Bundle, n_classes: int) -> ReferenceIndex | None:
    """The bundle's reference index, checked (BundleError when malformed), or None when it has none."""
    listed = bundle.manifest.get("files") or {}
    present = [name for name in (JSON, EMBEDDINGS, THUMBS) if name in listed]
    if not present:
        return None
    where = bundle.path / JSON
    if len(present) != 3:
        raise BundleError(f"{where}: the reference index needs {JSON}, {EMBEDDINGS} and {THUMBS} together")
    try:
        doc = json.loads(bundle.file(JSON).read_bytes())
        vectors = np.load(io.BytesIO(bundle.file(EMBEDDINGS).read_bytes()), allow_pickle=False)
        items = doc["items"]
        classes = np.array([int(i["class"]) for i in items], dtype=np.int64)
        ids = [str(i["id"]) for i in items]
        spans = [(int(i["offset"]), int(i["bytes"])) for i in items]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise BundleError(f"{where}: not a reference index ({exc})") from None
    blob = bundle.file(THUMBS).read_bytes()
    if (vectors.ndim != 2 or len(vectors) != len(items) or len(items) > MAX_ITEMS or len(set(ids)) != len(ids)
            or not np.isfinite(vectors).all() or (len(classes) and not 0 <= classes.min() <= classes.max() < n_classes)
            or any(o < 0 or n <= 0 or o + n > len(blob) for o, n in spans)):
        raise BundleError(f"{where}: the reference index does not match its embeddings, thumbnails or classes")
    order = np.argsort(classes, kind="stable")
    vectors = vectors.astype(np.float32)[order]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    bounds = np.searchsorted(classes[order], np.arange(n_classes + 1), side="left")
    thumbs = {ids[i]: blob[o:o + n] for i, (o, n) in enumerate(spans)}
    return ReferenceIndex(vectors=np.ascontiguousarray(vectors), bounds=bounds, ids=[ids[i] for i in order],
                          thumbs=thumbs)
