"""Prometheus text exposition, written by hand (no extra dependency): request counts by route and
status, a latency histogram, the prediction queue depth and a batch-size histogram.

Counters live in one process; with `--workers N` each worker reports its own numbers (scrape each
worker, or sum on the Prometheus side). Label values come from the route template, never from the
raw path, so a client cannot grow the series without bound."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip([*self.buckets, "+Inf"], self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        brace = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{brace} {self.total:.6f}", f"{name}_count{brace} {self.n}"]
        return out


class Metrics:
    """Thread-safe counters; `render()` gives the Prometheus text format 0.0.4."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram(BATCH_BUCKETS)
        self.rejected = 0
        self.gauges: dict[str, Callable[[], float]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self.batches.observe(size)

    def observe_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP snapid_requests_total HTTP requests answered, by route and status.",
                     "# TYPE snapid_requests_total counter"]
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(f'snapid_requests_total{{method="{method}",route="{_esc(route)}",status="{status}"}} {n}')
            lines += ["# HELP snapid_request_seconds Request latency, by route.",
                      "# TYPE snapid_request_seconds histogram"]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("snapid_request_seconds", f'route="{_esc(route)}"')
            lines += ["# HELP snapid_batch_size Photos per model run.", "# TYPE snapid_batch_size histogram",
                      *self.batches.lines("snapid_batch_size"),
                      "# HELP snapid_rejected_total Predictions refused because the queue was full.",
                      "# TYPE snapid_rejected_total counter", f"snapid_rejected_total {self.rejected}"]
        for name, read in sorted(self.gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
