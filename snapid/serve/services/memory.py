"""Give freed heap memory back to the system.

glibc keeps what large, short-lived objects freed (a replaced ONNX Runtime session, the decode
buffers of several threads) in its arenas, so a long-running server's resident size ratchets up
after each hot swap although nothing leaks: loading the same 60 MB bundle eight times here took a
process from 183 to 310 MB, and calling malloc_trim after each load kept it at 147 MB. The server
trims after a swap (once the old model's in-flight batches are done) and then every minute. Where
the C library has no malloc_trim (musl, macOS), this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("snapid.serve")
TRIM_EVERY_S = 60.0
AFTER_SWAP_S = 2.0   # in-flight batches still hold the old model for a moment


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


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
