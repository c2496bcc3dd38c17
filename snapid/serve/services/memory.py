"""Give freed heap memory back to the system.

glibc keeps what large, short-lived objects freed (a replaced ONNX Runtime session, the decode
buffers of several threads) in its arenas, so a long-running server's resident size ratchets up
after each hot swap although nothing leaks: loading the same 60 MB bundle eight times here took a
process from 183 to 310 MB, and calling malloc_trim after each load kept it at 147 MB. The server
trims after a swap (once the old model's in-flight batches are done) and then every minute. Where
the C library has no malloc_trim (musl, macOS), this does nothing.

Trimming alone left a step at the first hot swap (issue 17's soak: flat at ~356 MB, +90 MB at the
first swap, flat again after): freeing the old session's large blocks, which glibc had mmapped,
raises glibc's dynamic mmap threshold towards 32 MB (and its trim threshold to twice that), so from
then on blocks up to 32 MB live in the malloc arenas, and each arena keeps what they free. The
server therefore fixes the threshold (`fix_mmap_threshold`, as the MALLOC_MMAP_THRESHOLD_ environment
variable would), so a swap cannot move it. Where: at glibc's own starting value (128 KiB) the swap's
step was gone (a 30-minute soak: +0.5 %), but every request's decode and batch buffers then went to
mmap and back, page-faulted afresh each time: 85 fp32 / 95 int8 req/s at 16 clients against 94 / 127
with the dynamic threshold (benchmarks/serve.py, the same machine and hour). At 8 MiB, above one
request's buffers (a decoded photo, a batch of inputs) and below a model's arena regions, serving kept
its rate (102 / 141 req/s in the same comparison); docs/benchmarks.md §14 has the soak.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os

log = logging.getLogger("snapid.serve")
TRIM_EVERY_S = 60.0
AFTER_SWAP_S = 2.0   # in-flight batches still hold the old model for a moment
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 8 << 20  # above one request's buffers, below a model's arena regions (see above)


def _libc_function(name: str):
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


_TRIM = _libc_function("malloc_trim")
_MALLOPT = _libc_function("mallopt") if _TRIM is not None else None  # glibc only: mallopt's codes are its own


def fix_mmap_threshold() -> bool:
    """Stop glibc from raising its mmap threshold when large blocks are freed (a hot swap's old session),
    so that large blocks keep going to mmap and back to the system when freed. Left alone where the
    MALLOC_MMAP_THRESHOLD_ environment variable is set (the operator chose), or without glibc. True if set."""
    if _MALLOPT is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(_MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release_memory(collect: bool = True) -> bool:
    """Collect garbage, then hand freed heap back to the system; False where that is not possible."""
    if collect:
        gc.collect()
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def release_soon(delay_s: float = AFTER_SWAP_S) -> None:
    """Release memory ``delay_s`` from now, off the event loop (called after a hot swap)."""
    loop = asyncio.get_running_loop()
    loop.call_later(delay_s, lambda: loop.run_in_executor(None, release_memory))


async def trim_forever(every_s: float = TRIM_EVERY_S) -> None:
    """Every ``every_s``, hand back what requests freed (no garbage collection: Python runs its own)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(release_memory, False)
        except Exception:  # never worth stopping the server for
            log.exception("malloc_trim failed")
