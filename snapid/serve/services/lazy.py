"""A value made on its first use, once: what opens the database (or needs it) is built with the app, and
the opening waits until a request needs it, so serving predictions alone never waits for the database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """Call it for the value: made by ``make`` on the first call, from any thread, exactly once. A call
    that fails (the database is away) leaves nothing behind: the next call tries again."""

    def __init__(self, make: Callable[[], T]):
        self._make, self._lock = make, threading.Lock()
        self._made, self._value = False, None

    def __call__(self) -> T:
        if not self._made:
            with self._lock:
                if not self._made:
                    self._value = self._make()
                    self._made = True
        return self._value  # type: ignore[return-value]
