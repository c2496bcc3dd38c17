"""Explain in the bundle (issue 19): model.onnx's optional output "cam", the class activation maps of every class.

A run with a linear head on pooled features (the default recipe, the fused pair included) is exported as a
``snapid.models.cam.CamNet``: the same logits, plus N x C x h x w maps, computed by the graph itself, so the
server explains an answer with ONNX Runtime and NumPy only. Both outputs are checked against torch on the
parity images: the logits as before, the maps after the 0..1 scaling the server applies (what a user sees).
Other runs (an MLP head, a backbone with layers after its pooling, an ensemble) get no "cam" output, and the
manifest's "explain" says why; their reports use Grad-CAM in torch instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snapid.export.onnx import INPUT, ParityError
from snapid.models.cam import CAM_OUTPUT, cam_model

__all__ = ["CAM_OUTPUT", "cams", "check_cam_parity", "graph", "manifest_entry", "scaled"]

CAM_TOLERANCE = 1e-3     # max |map_onnx - map_torch| of the 0..1-scaled maps, over every class and cell
BATCH = 32


def graph(module: nn.Module, *, size: int | None = None, embedding: bool = False) -> tuple[nn.Module | None, str]:
    """(the module to export with a "cam" output, "") or (None, why explain is not available)."""
    return cam_model(module, embedding=embedding, size=size)


def scaled(maps: np.ndarray) -> np.ndarray:
    """... x h x w maps scaled to 0..1 each (min → 0, max → 1; a flat map is all 0), as the server shows them."""
    maps = np.asarray(maps, dtype=np.float64)
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def cams(session, inputs: np.ndarray) -> np.ndarray:
    """The graph's N x C x h x w maps for normalised inputs, BATCH at a time."""
    return np.concatenate([session.run([CAM_OUTPUT], {INPUT: inputs[i:i + BATCH]})[0]
                           for i in range(0, len(inputs), BATCH)])


@torch.no_grad()
def check_cam_parity(session, net: nn.Module, inputs: np.ndarray, *, where: str,
                     tolerance: float = CAM_TOLERANCE) -> dict:
    """The graph's "cam" output against the torch CamNet's on the parity images (0..1-scaled maps);
    ParityError beyond ``tolerance``. Returns {"images", "grid", "max_abs_diff", "tolerance", "peak_agreement"}."""
    got = cams(session, inputs)
    want = np.concatenate([net.eval()(torch.from_numpy(inputs[i:i + BATCH]))[-1].double().numpy()
                           for i in range(0, len(inputs), BATCH)])
    if got.shape != want.shape:
        raise ParityError(f"{where}: the exported graph gives class activation maps of shape {got.shape}, "
                          f"torch {want.shape}")
    a, b = scaled(got), scaled(want)
    worst = float(np.abs(a - b).max()) if np.isfinite(a).all() else float("inf")
    if not worst <= tolerance:
        raise ParityError(f"{where}: the exported class activation maps do not match torch: max |difference| "
                          f"{worst:.3g} of the 0..1 scale > tolerance {tolerance:g}; nothing was written")
    flat_a, flat_b = a.reshape(*a.shape[:2], -1), b.reshape(*b.shape[:2], -1)
    peaks = float((flat_a.argmax(-1) == flat_b.argmax(-1)).mean())
    return {"images": len(inputs), "grid": list(got.shape[-2:]), "max_abs_diff": worst, "tolerance": tolerance,
            "peak_agreement": peaks}


def manifest_entry(module: nn.Module, parity: dict, *, size: int | None = None) -> dict:
    """The manifest's "explain": {"available": true, "method": "cam", "output": "cam", "grid": [h, w]} when the
    graph has the maps (their parity is in ``parity["cam"]``), else {"available": false, "reason": ...}."""
    if "cam" in parity:
        return {"available": True, "method": "cam", "output": CAM_OUTPUT, "grid": parity["cam"]["grid"]}
    _, why = (cam_model(module, size=size) if hasattr(module, "backbone")
              else (None, "an ensemble mixes several models' answers"))
    return {"available": False, "reason": why or "the bundle was exported without class activation maps"}
