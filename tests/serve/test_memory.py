"""Freed heap is handed back to the system (snapid.serve.services.memory): after a hot swap, and every minute;
and glibc's mmap threshold stays where it starts, so a swap does not raise it."""

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


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="mallopt's codes are glibc's")
def test_mmap_threshold_is_fixed_unless_the_operator_set_it(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.fix_mmap_threshold() is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert memory.fix_mmap_threshold() is False
