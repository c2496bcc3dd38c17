"""Heatmaps over the mistakes gallery's thumbnails (issue 19): where the model looked when it answered wrongly.

The map of the *predicted* class: a wrong answer read from the background shows up as heat off the object. Exact
class activation maps when the run's head is linear on pooled features (`snapid.models.cam.cam_model`, the maps
the bundle serves), Grad-CAM otherwise (an MLP head); none for an ensemble or a backbone without a feature map.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from snapid import geometry
from snapid.models.cam import cam_model, grad_cam

ALPHA = 0.45
RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
THUMB_PX = 96


def _scaled(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def overlay_uri(pixels: np.ndarray, grid: np.ndarray, side: int = THUMB_PX) -> str:
    """H x W x 3 uint8 with the 0..1 ``grid`` upsampled and laid over it, as a small JPEG data: URI."""
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    heat = Image.fromarray((grid * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
    pos = np.asarray(heat, dtype=np.float64) / 255 * (len(RAMP) - 1)
    low = np.minimum(pos.astype(int), len(RAMP) - 2)
    tint = RAMP[low] * (1 - (pos - low))[..., None] + RAMP[low + 1] * (pos - low)[..., None]
    blended = Image.fromarray(np.round(np.asarray(image) * (1 - ALPHA) + tint * ALPHA).astype(np.uint8))
    blended.thumbnail((side, side))
    buffer = io.BytesIO()
    blended.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def add_heatmaps(trained, dataset, rows: list[dict], classes: list[dict]) -> None:
    """Give each mistakes-gallery row ``heatmap`` (a data: URI) and ``heatmap_method`` ("cam" or "grad-cam"), in
    place; rows stay as they are when the model has no feature map to explain."""
    if not rows:
        return
    index = {c["id"]: i for i, c in enumerate(classes)}
    pixels = np.stack([dataset[int(r["position"])][0].permute(1, 2, 0).numpy() for r in rows])
    pre = trained.preprocess
    x = torch.from_numpy(geometry.normalise(pixels, pre["mean"], pre["std"]))
    chosen = torch.tensor([index[r["pred"]] for r in rows])
    model = trained.model.eval()
    net, _ = cam_model(model, size=int(pre["size"]))
    try:
        if net is not None:
            with torch.no_grad():
                maps, method = net(x)[-1][torch.arange(len(rows)), chosen], "cam"
        else:
            maps, method = grad_cam(model, x, chosen), "grad-cam"
    except ValueError:  # no feature map: the gallery keeps its plain thumbnails
        return
    grids = _scaled(maps.double().numpy())
    for row, image, grid in zip(rows, pixels, grids, strict=True):
        row["heatmap"], row["heatmap_method"] = overlay_uri(image, grid), method
