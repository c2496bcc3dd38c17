"""A detector run → the bundle's detector.onnx and detector.json, checked against torch first.

The graph takes one letterboxed photo, "image": 3 x S x S float32 in [0, 1] (torchvision's detection
models normalise inside), and gives the model's own post-NMS detections: "boxes" K x 4 (x1, y1, x2, y2
in the S x S frame), "scores" K and "labels" K int64. It is exported with the TorchScript-based
exporter, the one torchvision documents for its detection models (the data-dependent K traces as a
dynamic axis there).

Parity: on a few real photos of the detector's dataset, every detection that serving would use (score
at or above the run's threshold) must have a partner in the other runtime with the same label, box
within BOX_TOLERANCE x S pixels and score within SCORE_TOLERANCE. Detections are matched rather than
compared row by row because equal scores may come out in either order. A detection whose score sits
within SCORE_TOLERANCE of the threshold may be missing on the other side: rounding decides it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sqlalchemy.engine import Engine
from torch import nn

from snapid import geometry, images
from snapid.detect.geometry import letterbox_geometry
from snapid.export.onnx import ExportError, ParityError, make_session
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace

INPUT, OUTPUTS = "image", ("boxes", "scores", "labels")
OPSET = 17                  # torchvision's detection ONNX tests use 11+; 17 runs everywhere ORT 1.31 does
BOX_TOLERANCE = 1e-3        # x S pixels
SCORE_TOLERANCE = 1e-4
PARITY_PHOTOS = 4
MAX_OBJECTS = 20            # detections kept per photo at serving time, best first
PARITY_SPLITS = ("val", "test", "train")


class SingleImage(nn.Module):
    """torchvision's list-of-images → list-of-dicts interface as one image → three tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model([image])[0]
        return out["boxes"], out["scores"], out["labels"]


def to_onnx(model: nn.Module, size: int, *, where: str = "detector") -> bytes:
    """The eval-mode detector as ONNX bytes (input "image", outputs boxes / scores / labels)."""
    wrapped = SingleImage(model.eval()).eval()
    example = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes: expected here
            torch.onnx.export(wrapped, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                              output_names=list(OUTPUTS), dynamic_axes={name: {0: "detections"} for name in OUTPUTS},
                              do_constant_folding=True)
    except Exception as exc:  # the exporter raises many types
        raise ExportError(f"{where}: could not be exported to ONNX ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300] if str(exc) else ''})") from None
    return buf.getvalue()


# --- parity --------------------------------------------------------------------------------------------
def letterboxed(photo: Path | bytes, size: int, *, name: str = "photo") -> np.ndarray:
    """A photo as the detector sees it: upright RGB letterboxed to size x size, 3 x S x S float32 in [0, 1]."""
    data = photo if isinstance(photo, bytes) else images.read_file(Path(photo))
    picture = geometry.letterbox(images.decode(data, name=name), size)
    return np.ascontiguousarray(np.asarray(picture, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0))


def _usable(dets: tuple[np.ndarray, ...], floor: float) -> tuple[np.ndarray, ...]:
    boxes, scores, labels = dets
    keep = scores >= floor
    return boxes[keep], scores[keep], labels[keep]


def _unmatched(a, b, *, size: int, floor: float) -> tuple[int | None, float, float]:
    """First detection of ``a`` (above the threshold's rounding band) with no partner in ``b``, and the
    largest box / score differences of the matched ones."""
    box_tol, worst_box, worst_score = BOX_TOLERANCE * size, 0.0, 0.0
    for i in range(len(a[1])):
        if a[1][i] < floor + SCORE_TOLERANCE:
            continue  # rounding at the threshold may drop it on the other side
        same = (b[2] == a[2][i]) & (np.abs(b[1] - a[1][i]) <= SCORE_TOLERANCE)
        box_diff = np.abs(b[0] - a[0][i]).max(axis=1) if len(b[0]) else np.zeros(0)
        candidates = np.flatnonzero(same & (box_diff <= box_tol))
        if not len(candidates):
            return i, worst_box, worst_score
        best = candidates[np.argmin(box_diff[candidates])]
        worst_box, worst_score = (max(worst_box, float(box_diff[best])),
                                  max(worst_score, float(abs(b[1][best] - a[1][i]))))
    return None, worst_box, worst_score


def check_parity(session: ort.InferenceSession, model: nn.Module, photos: list[np.ndarray], *, floor: float,
                 where: str = "detector") -> dict:
    """ParityError unless ONNX Runtime and torch agree on every usable detection of every photo.
    Returns {"images", "detections", "max_box_diff", "max_score_diff", "box_tolerance", "score_tolerance"}."""
    if not photos:
        raise ParityError(f"{where}: no photos to check the detector export against (its dataset has none readable)")
    size = photos[0].shape[-1]
    wrapped, report = SingleImage(model.eval()).eval(), {"detections": 0, "max_box_diff": 0.0, "max_score_diff": 0.0}
    for n, photo in enumerate(photos):
        with torch.no_grad():
            reference = tuple(t.numpy() for t in wrapped(torch.from_numpy(photo)))
        exported = tuple(session.run(list(OUTPUTS), {INPUT: photo}))
        ref, got = _usable(reference, floor), _usable(exported, floor)
        for a, b, side in ((ref, got, "torch"), (got, ref, "ONNX Runtime")):
            missing, box_diff, score_diff = _unmatched(a, b, size=size, floor=floor)
            if missing is not None:
                raise ParityError(f"{where}: the ONNX export does not match torch on parity photo {n}: "
                                  f"{side}'s detection {missing} (label {int(a[2][missing])}, "
                                  f"score {float(a[1][missing]):.4f}, box {np.round(a[0][missing], 2).tolist()}) "
                                  f"has no partner within {BOX_TOLERANCE * size:g} px and score {SCORE_TOLERANCE:g}; "
                                  "nothing was written")
            report["max_box_diff"] = max(report["max_box_diff"], box_diff)
            report["max_score_diff"] = max(report["max_score_diff"], score_diff)
        report["detections"] += len(ref[1])
    return {"images": len(photos), **report, "box_tolerance": BOX_TOLERANCE * size, "score_tolerance": SCORE_TOLERANCE}


def dataset_photos(dataset: str, version: int, size: int, *, engine: Engine,
                   limit: int = PARITY_PHOTOS) -> list[np.ndarray]:
    """The first readable photos of the dataset (validation first, photos with boxes first), letterboxed."""
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=dataset, version=version)
    order = {split: i for i, split in enumerate(PARITY_SPLITS)}
    samples = sorted(manifest.samples, key=lambda smp: (order.get(smp.split, 9), not smp.boxes))
    photos = []
    for sample in samples:
        if len(photos) == limit:
            break
        try:
            photos.append(letterboxed(Path(manifest.root) / sample.path, size, name=sample.path))
        except (OSError, images.ImageError):  # a photo gone since import: try the next one
            continue
    return photos


# --- detector.json and the export ----------------------------------------------------------------------
def detector_json(meta: dict, *, run: str, pad: float) -> dict:
    """What serving needs beside the graph; ``pad``: the crop padding the classifier was trained with."""
    size = int(meta["size"])
    letterbox_geometry(size, size, size)  # validates the size
    threshold, iou = float(meta.get("score_threshold", 0.5)), float(meta.get("nms_iou", 0.5))
    if not (0.0 <= threshold <= 1.0 and 0.0 < iou <= 1.0 and 0.0 <= pad <= 2.0):
        raise ExportError(f"detector {run!r}: score_threshold {threshold}, nms_iou {iou} or pad {pad} out of range")
    return {"size": size, "letterbox": True, "score_threshold": threshold, "nms_iou": iou,
            "class_agnostic": bool(meta.get("class_agnostic", True)), "classes": list(meta.get("classes") or []),
            "pad": float(pad), "max_objects": MAX_OBJECTS, "run": run}


def build_files(model: nn.Module, meta: dict, photos: list[np.ndarray], *, run: str, pad: float) -> tuple[bytes, dict]:
    """(detector.onnx bytes, detector.json with the parity report) for a loaded detector; ParityError or
    ExportError when the graph cannot be trusted."""
    spec = detector_json(meta, run=run, pad=pad)
    onnx_bytes = to_onnx(model, spec["size"], where=f"detector {run!r}")
    session = make_session(onnx_bytes, where=f"detector {run!r}")
    parity = check_parity(session, model, photos, floor=spec["score_threshold"], where=f"detector {run!r}")
    return onnx_bytes, {**spec, "parity": parity}


def export_detector(name: str, *, workspace: Workspace, engine: Engine, pad: float | None = None) -> tuple[bytes, dict]:
    """Detector run ``name`` → (detector.onnx bytes, detector.json dict), parity-checked on photos of its
    dataset. ``pad``: the classifier's crop padding (default: the detector run's own)."""
    from snapid.detect.loaded import load_detector

    with transaction(engine) as s:
        run = track.get_run(s, name=name)
    if run["kind"] != "detect":
        raise ExportError(f"run {name!r} is a {run['kind']} run, not a detector (train one with `snapid detect train`)")
    model, meta = load_detector(name, engine=engine)
    photos = dataset_photos(run["dataset"], run["dataset_version"], int(meta["size"]), engine=engine)
    return build_files(model, meta, photos, run=name, pad=float(meta.get("pad", 0.1) if pad is None else pad))
