"""Prometheus metrics with ``prometheus_client``: request counts by route and status, a latency histogram,
the prediction queue depth, a batch-size histogram, the other gauges the app registers, and process metrics.

One process (``create_app`` in a test, ``snapid serve``): a registry of this app's own. Several workers
(``snapid serve --workers N``): ``serving_metrics_dir`` in the parent makes a private folder, names it in
PROMETHEUS_MULTIPROC_DIR before the workers start, and every worker writes its numbers there; a scrape,
whichever worker answers it, reads them all (prometheus_client's multiprocess mode), so counters and
histograms are summed over the workers (those that exited included), and gauges over the live workers.

Label values come from the route template and a fixed set of methods, never from the raw request, so a
client cannot grow the series without bound."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("snapid.serve")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_S = 1.0  # how often a worker writes its gauges (and process metrics) for the other workers' scrapes

# the gauges the app registers (Metrics.gauges), with their help text
GAUGE_HELP = {
    "snapid_queue_depth": "Predictions waiting for the model.",
    "snapid_requests_in_flight": "Predictions admitted and not yet answered.",
    "snapid_prediction_log_dropped": "Predictions the log could not record (queue full, database down).",
    "snapid_prediction_log_retried": "Prediction-log rows a locked database refused for a while, written later.",
    "snapid_event_streams_open": "Server-sent event streams open now.",
}
# process metrics as ProcessCollector names them; with several workers, each summed over the live workers
# except the start time (the oldest worker's) and the file-descriptor limit (the highest)
_PROCESS_MODES = {"process_start_time_seconds": "livemin", "process_max_fds": "livemax"}

disable_created_metrics()  # no *_created series: the same exposition in one process and across workers


def multiprocess_dir() -> str | None:
    """The shared metrics folder of a multi-worker server, or None in a single process."""
    return os.environ.get(ENV) or None


class _Observed:
    """A prometheus_client histogram, plus how many values this process observed (``n``)."""

    def __init__(self, histogram: Histogram):
        self.histogram, self.n, self._lock = histogram, 0, threading.Lock()

    def observe(self, value: float) -> None:
        self.histogram.observe(value)
        with self._lock:
            self.n += 1


class _Gauges:
    """The app's gauges in one process: read when scraped."""

    def __init__(self, read: dict[str, Callable[[], float]]):
        self.read = read

    def collect(self):
        for name, read in sorted(self.read.items()):
            family = GaugeMetricFamily(name, GAUGE_HELP.get(name, name))
            family.add_metric([], float(read()))
            yield family


class Metrics:
    """Thread-safe counters (prometheus_client's); `render()` gives the Prometheus text format 0.0.4.

    ``gauges``: name → a function giving the value now; read at each scrape in one process, and every
    REFRESH_S (and at each scrape this worker answers) across workers."""

    def __init__(self) -> None:
        self.path = multiprocess_dir()
        self.gauges: dict[str, Callable[[], float]] = {}
        registry = None
        if self.path is None:
            registry = self._registry = CollectorRegistry(auto_describe=True)
            ProcessCollector(registry=registry)
            registry.register(_Gauges(self.gauges))
        else:
            if values.ValueClass is values.MutexValue:  # prometheus_client was imported before the folder was named
                values.ValueClass = values.get_value_class()
            os.makedirs(self.path, exist_ok=True)
            self._shared: dict[str, Gauge] = {}
            self._process = ProcessCollector(registry=None)
            self._refresh_lock = threading.Lock()
        self.requests = Counter("snapid_requests", "HTTP requests answered, by route and status.",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("snapid_request_seconds", "Request latency, by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.batches = _Observed(Histogram("snapid_batch_size", "Photos per model run.", buckets=BATCH_BUCKETS,
                                           registry=registry))
        self.rejected = Counter("snapid_rejected", "Predictions refused because the queue was full.",
                                registry=registry)
        self.rejected.inc(0)  # shown from the start, as 0
        if self.path is not None:
            self._gauge("snapid_workers", "Worker processes serving now.").set(1)
            self.refresh()
            threading.Thread(target=self._refresh_forever, name="snapid-metrics", daemon=True).start()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batches.observe(size)

    def observe_rejected(self) -> None:
        self.rejected.inc()

    def render(self) -> str:
        if self.path is None:
            return generate_latest(self._registry).decode()
        self.refresh()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.path)
        return generate_latest(registry).decode()

    # --- several workers: this worker's gauges written to the shared folder -------------------------
    def _gauge(self, name: str, help_text: str, mode: str = "livesum") -> Gauge:
        gauge = self._shared.get(name)
        if gauge is None:
            gauge = self._shared[name] = Gauge(name, help_text, registry=None, multiprocess_mode=mode)
        return gauge

    def refresh(self) -> None:
        """Write this worker's gauges and process metrics where the other workers' scrapes read them."""
        with self._refresh_lock:
            for name, read in list(self.gauges.items()):
                try:
                    value = float(read())
                except Exception:  # a gauge must never break a scrape or the refresh thread
                    log.debug("gauge %s could not be read", name, exc_info=True)
                    continue
                self._gauge(name, GAUGE_HELP.get(name, name)).set(value)
            for family in self._process.collect():
                for sample in family.samples:
                    mode = _PROCESS_MODES.get(sample.name, "livesum")
                    self._gauge(sample.name, f"{family.documentation} (all workers)", mode).set(sample.value)

    def _refresh_forever(self) -> None:
        while True:
            time.sleep(REFRESH_S)
            try:
                self.refresh()
            except Exception:
                log.debug("metrics refresh failed", exc_info=True)


# --- the parent of several workers ----------------------------------------------------------------------
@contextlib.contextmanager
def serving_metrics_dir(workers: int) -> Iterator[str | None]:
    """For ``snapid serve --workers N`` (N > 1): a private, empty folder named in PROMETHEUS_MULTIPROC_DIR
    for the workers to inherit, the live gauges of each worker that exits dropped (``mark_process_dead``),
    and the folder removed at exit. One worker serves in this process with its own registry: the variable
    is cleared then, so a folder left by a caller is never read."""
    previous = os.environ.pop(ENV, None)
    if workers <= 1:
        try:
            yield None
        finally:
            if previous is not None:
                os.environ[ENV] = previous
        return
    path = tempfile.mkdtemp(prefix="snapid-metrics-")  # new and empty, readable by this user only
    os.environ[ENV] = path
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep_dead_workers, args=(path, stop), name="snapid-metrics-sweep",
                               daemon=True)
    sweeper.start()
    try:
        yield path
    finally:
        stop.set()
        sweeper.join(timeout=5)
        os.environ.pop(ENV, None)
        if previous is not None:
            os.environ[ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def sweep_dead_workers(path: str) -> list[int]:
    """Drop the live gauges of every worker that is gone (exited, killed, or a zombie not yet reaped)."""
    dead = set()
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_FILE.fullmatch(os.path.basename(file))
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, path)
    return sorted(dead)


def _sweep_dead_workers(path: str, stop: threading.Event) -> None:
    while not stop.wait(REFRESH_S):
        try:
            sweep_dead_workers(path)
        except OSError:
            log.debug("metrics sweep failed", exc_info=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
