"""Pure coordinate conversions: box formats, and the letterbox a detector sees.

Letterboxing is centred, exactly as ``snapid.geometry.letterbox`` draws it (``geometry.letterbox_layout``):
the photo is scaled by ``S / max(w, h)`` to ``round(w * scale) x round(h * scale)`` and pasted at
``((S - w') // 2, (S - h') // 2)`` on a black S x S canvas. Centring keeps the padding symmetric, so a
horizontal flip of the letterboxed picture is the letterbox of the flipped photo (augmentation stays
honest). Boxes are (x1, y1, x2, y2) in upright pixels (after EXIF orientation), see docs/decisions.md.
The padded region and crop of a box are ``geometry.padded_box`` and ``geometry.crop_rect``.

No torch here: serving (ONNX Runtime) maps detections back with these same functions.
"""

from __future__ import annotations

import numpy as np

from snapid import geometry


def letterbox_geometry(w: int, h: int, size: int) -> tuple[float, float, float]:
    """(scale, pad_x, pad_y) of a w x h photo letterboxed to size x size (see the module docstring)."""
    scale, _, (left, top) = geometry.letterbox_layout(w, h, size)
    return scale, float(left), float(top)


def to_letterbox(boxes, scale: float, pad_x: float, pad_y: float) -> np.ndarray:
    """N x 4 boxes from original pixels into the letterboxed S x S frame."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return b * scale + np.array([pad_x, pad_y, pad_x, pad_y])


def to_original(boxes, scale: float, pad_x: float, pad_y: float, w: int, h: int) -> np.ndarray:
    """N x 4 boxes from the letterboxed frame back to original pixels, clipped to the w x h photo."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = (b - np.array([pad_x, pad_y, pad_x, pad_y])) / scale
    out[:, 0::2] = out[:, 0::2].clip(0, w)
    out[:, 1::2] = out[:, 1::2].clip(0, h)
    return out


# --- annotation formats -------------------------------------------------------------------
def coco_to_xyxy(x: float, y: float, bw: float, bh: float) -> tuple[float, float, float, float]:
    """COCO / AI-Hub [x, y, width, height] → corners."""
    return x, y, x + bw, y + bh


def xyxy_to_coco(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    return x1, y1, x2 - x1, y2 - y1


def yolo_to_xyxy(cx: float, cy: float, bw: float, bh: float, w: int, h: int) -> tuple[float, float, float, float]:
    """YOLO normalised centre/size → pixel corners of a w x h photo."""
    return (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h


def xyxy_to_yolo(x1: float, y1: float, x2: float, y2: float, w: int, h: int) -> tuple[float, float, float, float]:
    return (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
