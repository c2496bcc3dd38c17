"""Out-of-memory back-off: on a CUDA out-of-memory error, halve the batch and carry on from the same sample.

The pill project lost whole runs to a batch that did not fit; here the work goes on with a smaller batch,
and nothing done before is redone or skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def in_batches(total: int, batch_size: int, step: Callable[[int, int], None], *,
               note: Callable[[str], None] | None = None, what: str = "work") -> int:
    """Call ``step(start, stop)`` over [0, total) in batches of ``batch_size``; when a step runs out of GPU memory,
    halve the batch and run the same start again (down to 1). Returns the batch size that was used last."""
    start = 0
    while start < total:
        stop = min(start + batch_size, total)
        try:
            step(start, stop)
        except torch.cuda.OutOfMemoryError:
            if batch_size <= 1:
                raise
            batch_size = halved(batch_size)
            if note:
                note(f"out of GPU memory in {what}: batch size halved to {batch_size}, continuing at item {start}")
            continue
        start = stop
    return batch_size


def halved(batch_size: int) -> int:
    """Half the batch, after giving the failed batch's memory back to the GPU."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return max(1, batch_size // 2)
