"""A bounded per-key rate limiter (hand-off sessions opened per client address)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque


class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key; remembers at most ``max_keys`` keys."""

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 10_000):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._hits: OrderedDict[str, deque] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits  # most recent last
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        return allowed
