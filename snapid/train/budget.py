"""Time budgets: "10m" → seconds, and a backbone's measured speed on this machine.

The planner (snapid.train.plan) turns a budget into a recipe from these measurements, so the same
budget buys a bigger recipe on a faster machine instead of a fixed one that overruns on a slow one.
"""

from __future__ import annotations

import re
import time

import torch

from snapid.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)?", re.IGNORECASE)
_UNIT = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "sec": 1.0, None: 1.0}


def parse_budget(text: str | float | int) -> float:
    """Seconds in "90s", "10m", "1h30m", "2.5m" or a plain number of seconds; > 0."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        spec = str(text).strip().replace(" ", "")
        parts = list(_PART.finditer(spec))
        if not spec or not parts or "".join(p.group(0) for p in parts) != spec:
            raise UsageError(f"budget {text!r}: write a duration such as 90s, 10m or 1h30m")
        seconds = sum(float(p.group(1)) * _UNIT[(p.group(2) or "").lower() or None] for p in parts)
    if not seconds > 0:
        raise UsageError(f"budget {text!r}: must be more than 0 seconds")
    return seconds


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


@torch.inference_mode()
def images_per_second(backbone: torch.nn.Module, size: int, *, device: torch.device, dtype: torch.dtype | None,
                      batch: int = 32, min_seconds: float = 0.5, rounds: int = 3) -> float:
    """Frozen-feature throughput of ``backbone`` at ``size`` px: one warm-up batch, then the best of ``rounds``
    rounds, each of batches until ``min_seconds`` have passed (at least two): a shared machine's busy moment
    should not make the plan settle for a smaller recipe."""
    return max(_rate(backbone, size, device=device, dtype=dtype, batch=batch, min_seconds=min_seconds)
               for _ in range(rounds))


def _rate(backbone: torch.nn.Module, size: int, *, device: torch.device, dtype: torch.dtype | None, batch: int,
          min_seconds: float) -> float:
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        backbone(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, runs = time.perf_counter(), 0
        while runs < 2 or time.perf_counter() - start < min_seconds:
            backbone(x)
            runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return batch * runs / (time.perf_counter() - start)
