"""The detect → crop stage of a bundle with detector.onnx: find the objects in a photo, then cut each one
out exactly as `snapid data prepare --crop boxes` cut the classifier's training crops.

Steps for one photo (on a decode thread; no torch anywhere):
 1. decode once, at the smallest size that still fills the detector's S x S letterbox (JPEG draft);
 2. letterbox it with `snapid.geometry.letterbox` (the layout `snapid.detect.geometry` maps), run the
    detector, keep detections scoring at least score_threshold, best first, at most max_objects, and
    map their boxes back to original (upright) pixels;
 3. for each box: the padded region of `snapid.geometry.padded_box`, the decode size of
    `geometry.decode_size`, the crop and resize of `geometry.cut_and_fit` — the functions prepare itself
    calls, so a served crop equals the prepared cache item of the same photo and box. Boxes whose decode
    would land on the same JPEG draft scale share one decode.
With no detection, the whole photo is prepared as a plain bundle would (`prepare_photo`), and the
answer says it fell back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from snapid import geometry, images
from snapid.detect.geometry import letterbox_geometry, to_original
from snapid.export.bundle import Bundle, BundleError
from snapid.serve.services.preprocess import PreprocessSpec, normalise, prepare_photo

INPUT, OUTPUTS = "image", ("boxes", "scores", "labels")
MAX_OBJECTS_CAP = 100          # whatever detector.json says, one photo never yields more crops
MAX_JSON_BYTES = 1 << 20
_SWAPS_AXES = {5, 6, 7, 8}     # EXIF orientations that turn the photo by 90 degrees (as images.decode)


@dataclass(frozen=True)
class DetectorSpec:
    size: int
    score_threshold: float
    nms_iou: float
    class_agnostic: bool
    classes: list[str]
    pad: float
    max_objects: int
    run: str

    @classmethod
    def from_json(cls, data, where: Path) -> DetectorSpec:
        """Validated from detector.json; a bad value names itself."""
        try:
            spec = cls(size=int(data["size"]), score_threshold=float(data["score_threshold"]),
                       nms_iou=float(data.get("nms_iou", 0.5)), class_agnostic=bool(data.get("class_agnostic", True)),
                       classes=[str(c) for c in data.get("classes") or []], pad=float(data["pad"]),
                       max_objects=int(data.get("max_objects", 20)), run=str(data.get("run", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{where}: missing or invalid value ({exc!r})") from None
        if data.get("letterbox", True) is not True:
            raise BundleError(f"{where}: only letterboxed detectors are supported")
        if not (32 <= spec.size <= 2048 and 0.0 <= spec.score_threshold <= 1.0 and 0.0 <= spec.pad <= 2.0
                and 1 <= spec.max_objects <= MAX_OBJECTS_CAP):
            raise BundleError(f"{where}: size {spec.size}, score_threshold {spec.score_threshold}, pad {spec.pad} or "
                              f"max_objects {spec.max_objects} out of range")
        return spec


@dataclass(eq=False)
class LoadedDetector:
    session: ort.InferenceSession
    spec: DetectorSpec

    def run(self, letterboxed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """S x S x 3 uint8 → (boxes K x 4 in the S x S frame, scores K, labels K)."""
        x = np.ascontiguousarray(letterboxed.transpose(2, 0, 1), dtype=np.float32) * np.float32(1.0 / 255.0)
        boxes, scores, labels = self.session.run(list(OUTPUTS), {INPUT: x})
        return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1),
                np.asarray(labels).reshape(-1).astype(np.int64))


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]   # x1, y1, x2, y2 in original (upright) pixels
    score: float
    label: int


@dataclass
class PhotoObjects:
    """What one photo gave: its detections and the classifier inputs (one per detection, or the whole
    photo when there is none)."""
    width: int
    height: int
    detections: list[Detection]
    inputs: np.ndarray                      # N x 3 x S x S float32
    detect_ms: float = 0.0
    crops: np.ndarray | None = field(default=None, repr=False)   # N x S x S x 3 uint8 (tests compare them)

    @property
    def fallback(self) -> bool:
        return not self.detections


# --- loading -------------------------------------------------------------------------------------------
def load_detector(bundle: Bundle, session_factory) -> LoadedDetector | None:
    """The bundle's detector (None when it has none), checked: names, shapes and one test photo."""
    if not bundle.has_detector:
        return None
    json_file = bundle.file("detector.json")
    if json_file.stat().st_size > MAX_JSON_BYTES:
        raise BundleError(f"{json_file}: larger than {MAX_JSON_BYTES} bytes")
    try:
        spec = DetectorSpec.from_json(json.loads(json_file.read_bytes()), json_file)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{json_file}: not valid JSON ({exc})") from None
    model_file = bundle.file("detector.onnx")
    detector = LoadedDetector(session=session_factory(model_file), spec=spec)
    _check_graph(detector, model_file)
    return detector


def _check_graph(detector: LoadedDetector, where: Path) -> None:
    inputs = [i.name for i in detector.session.get_inputs()]
    outputs = [o.name for o in detector.session.get_outputs()]
    if inputs != [INPUT] or not set(OUTPUTS) <= set(outputs):
        raise BundleError(f"{where}: the detector must take {INPUT!r} and give {list(OUTPUTS)} "
                          f"(has {inputs} → {outputs})")
    size = detector.spec.size
    try:
        boxes, scores, labels = detector.run(np.zeros((size, size, 3), np.uint8))
    except Exception as exc:  # ORT raises its own types
        raise BundleError(f"{where}: a test photo failed ({str(exc).splitlines()[0][:300]})") from None
    if (not (len(boxes) == len(scores) == len(labels))
            or not np.all(np.isfinite(boxes)) or not np.all(np.isfinite(scores))):
        raise BundleError(f"{where}: a test photo gave mismatched or non-finite detections")


# --- detect --------------------------------------------------------------------------------------------
def detect(detector: LoadedDetector, data: bytes, limits: images.DecodeLimits,
           name: str = "photo") -> tuple[int, int, list[Detection]]:
    """(upright width, height, detections best first) of one photo."""
    header = images.open_image(data, limits, name)
    width, height = images.upright_size(header)
    size = detector.spec.size
    picture = images.decode(data, limits=limits, name=name,
                            min_size=geometry.decode_size(width, height, None, size, "letterbox"))
    boxes, scores, labels = detector.run(np.asarray(geometry.letterbox(picture, size), dtype=np.uint8))
    return width, height, _kept(detector.spec, boxes, scores, labels, picture.size, (width, height))


def _kept(spec: DetectorSpec, boxes, scores, labels, decoded: tuple[int, int],
          original: tuple[int, int]) -> list[Detection]:
    """Detections at or above the threshold, best first, at most max_objects, in original pixels; boxes
    thinner than a pixel (after clipping) are dropped: nothing to crop."""
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= spec.score_threshold][:spec.max_objects]
    if not order:
        return []
    (dw, dh), (w, h) = decoded, original
    layout = letterbox_geometry(dw, dh, spec.size)
    mapped = to_original(boxes[order], *layout, dw, dh) * np.array([w / dw, h / dh, w / dw, h / dh])
    found = []
    for (x1, y1, x2, y2), i in zip(mapped, order, strict=True):
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            found.append(Detection((round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)), float(scores[i]),
                                   int(labels[i])))
    return found


# --- crop ----------------------------------------------------------------------------------------------
def crop_objects(data: bytes, width: int, height: int, boxes: list[tuple[float, float, float, float]], *,
                 spec: PreprocessSpec, pad: float, limits: images.DecodeLimits, name: str = "photo") -> np.ndarray:
    """N x S x S x 3 uint8 crops of ``boxes`` (original pixels), made as prepare made training crops."""
    decoded: dict[object, object] = {}
    crops = []
    for box in boxes:
        region = geometry.padded_box(box, pad, width, height)
        min_size = geometry.decode_size(width, height, region, spec.size, spec.resize)
        key = _draft_key(data, min_size, limits, name)
        if key not in decoded:
            decoded[key] = images.decode(data, limits=limits, name=name, min_size=min_size)
        crops.append(geometry.cut_and_fit(decoded[key], width, height, region, spec.size, spec.resize, where=name))
    return np.stack(crops) if crops else np.zeros((0, spec.size, spec.size, 3), np.uint8)


def _draft_key(data: bytes, min_size: tuple[int, int], limits: images.DecodeLimits, name: str):
    """The size `images.decode(..., min_size=min_size)` will decode at: a JPEG's draft scale, read from its
    header (no pixels); other formats always decode at full size (key None)."""
    im = images.open_image(data, limits, name)
    if im.format != "JPEG":
        return None
    want = (min_size[1], min_size[0]) if images.orientation(im) in _SWAPS_AXES else min_size
    im.draft(None, (max(1, want[0]), max(1, want[1])))
    return im.size


# --- the stage -----------------------------------------------------------------------------------------
def detect_and_crop(data: bytes, detector: LoadedDetector | None, spec: PreprocessSpec, limits: images.DecodeLimits,
                    name: str = "photo") -> PhotoObjects:
    """One photo → its detections and the classifier's inputs (the whole photo when nothing is found)."""
    start = time.perf_counter()
    if detector is None:
        width, height, found = 0, 0, []
    else:
        width, height, found = detect(detector, data, limits, name)
    detect_ms = (time.perf_counter() - start) * 1000
    if not found:
        return PhotoObjects(width, height, [], prepare_photo(data, spec, limits, name)[None], detect_ms)
    crops = crop_objects(data, width, height, [d.box for d in found], spec=spec, pad=detector.spec.pad,
                         limits=limits, name=name)
    return PhotoObjects(width, height, found, normalise(crops, spec), detect_ms, crops)
