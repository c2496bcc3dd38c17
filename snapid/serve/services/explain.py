"""explain=true (issue 19): where the model looked, per photo, from the graph's "cam" output (NumPy and Pillow only).

For each photo the class activation map of the answered class (the combined best class for mode=same, the
photo's own for mode=each) is scaled to 0..1 (min → 0, max → 1) and returned as a small grid (h x w, e.g. 9 x 9
for the default recipe at 260 px) covering the square the model saw (the centred square of the photo for
resize=crop, the photo letterboxed for resize=letterbox), row 0 at the top; plus the same map as a transparent PNG
(a data: URI, CELL_PX per cell, smoothed) to lay over that square. A transparent map rather than the photo with the
map blended in: about 3 KB and a millisecond instead of about 140 KB and 20-40 ms per photo (a 260 px PNG).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from snapid.errors import SnapidError
from snapid.serve.services.model import LoadedModel

ROUND = 4                    # decimals of the grid's numbers
CELL_PX = 4                  # overlay pixels per grid cell (a client scales it further, smoothly)
# a perceptual dark-blue → teal → yellow ramp (viridis' ends and middle): readable on most photos, and for
# colour-blind readers
RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


class ExplainUnavailable(SnapidError):
    code = "explain_unavailable"
    status = 409


def check(model: LoadedModel | None) -> None:
    """ExplainUnavailable unless the served bundle can explain (its graph gives class activation maps)."""
    if model is None:
        return  # no model: the prediction itself answers no_model
    if model.detector is not None:
        raise ExplainUnavailable("explain=true is not available for a bundle with a detector (mode=detect); "
                                 "ask without explain")
    if not model.explain:
        entry = model.bundle.manifest.get("explain")
        why = entry.get("reason") if isinstance(entry, dict) and entry.get("reason") else \
            "it was exported without class activation maps"
        raise ExplainUnavailable(f"explain=true is not available for this bundle: {why}. Class activation maps need "
                                 "a linear head on pooled features (the default recipe); export such a run again")


def scaled(cam: np.ndarray) -> np.ndarray:
    """One h x w map scaled to 0..1 (a flat map is all 0)."""
    cam = cam.astype(np.float64)
    low, span = cam.min(), cam.max() - cam.min()
    return (cam - low) / span if span > 0 else np.zeros_like(cam)


def colour(grid: np.ndarray) -> np.ndarray:
    """0..1 values → RGB uint8 along RAMP."""
    pos = np.clip(grid, 0, 1) * (len(RAMP) - 1)
    low = np.minimum(pos.astype(int), len(RAMP) - 2)
    frac = (pos - low)[..., None]
    return np.round(RAMP[low] * (1 - frac) + RAMP[low + 1] * frac).astype(np.uint8)


def overlay_png(grid: np.ndarray) -> str:
    """The 0..1 ``grid`` as a transparent RGBA PNG data: URI, CELL_PX per cell (bilinear): colour along RAMP, more
    opaque where the evidence is stronger (as the page draws it)."""
    rows, cols = grid.shape
    size = (cols * CELL_PX, rows * CELL_PX)
    smooth = np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
    smooth = np.clip(smooth, 0, 1)
    alpha = np.round(70 + 130 * smooth).astype(np.uint8)[..., None]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([colour(smooth), alpha], axis=-1), "RGBA").save(buf, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def heatmaps(model: LoadedModel, maps: np.ndarray, classes: list[int]) -> list[dict]:
    """One heatmap per photo: ``maps`` N x C x h x w, ``classes`` the class index to explain for each photo.
    Returns the answer's ``explain`` entries."""
    out = []
    for photo, (cam, index) in enumerate(zip(maps, classes, strict=True)):
        grid = scaled(cam[index])
        peak = np.unravel_index(int(np.argmax(grid)), grid.shape)
        out.append({"photo": photo, "class_index": int(index), "class_id": model.labels[index]["id"],
                    "grid": np.round(grid, ROUND).tolist(), "peak": [int(peak[0]), int(peak[1])],
                    "resize": model.spec.resize, "overlay": overlay_png(grid)})
    return out
