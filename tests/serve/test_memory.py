"""Freed heap is handed back to the system (snapid.serve.services.memory): after a hot swap, and every minute."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from snapid.serve.services import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="malloc_trim is glibc's")
def test_release_memory_trims_the_heap_on_glibc():
    blocks = [bytearray(256 << 10) for _ in range(400)]  # 100 MB in blocks under the mmap threshold's reach
    del blocks
    assert memory.release_memory() is True
