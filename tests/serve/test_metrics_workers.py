"""/metrics across worker processes (issue 22): with `snapid serve --workers N` one scrape, whichever worker
answers it, reports the whole server (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from snapid.serve.services import metrics as metrics_service
from tests.helpers import free_port
from tests.serve import prom
from tests.serve.conftest import GREEN, RED, coloured

PREDICT = "/api/v1/predict"


def _wait_ready(proc: subprocess.Popen, base: str, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server was not ready in 60 s:\n{log.read_text()}")


def test_one_scrape_counts_the_requests_every_worker_answered(bundle, home, tmp_path):
    """Two workers, N predictions on fresh connections from several threads (so both workers answer some),
    then scrapes on fresh connections: every one of them reports all N, whichever worker answered it."""
    n = 40
    port, temp = free_port(), tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "SNAPID_HOME": str(home.home), "TMPDIR": str(temp), "SNAPID_DRAIN_S": "0"}
    env.pop(metrics_service.ENV, None)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "snapid", "serve", str(bundle), "--workers", "2",
                                 "--port", str(port), "--no-reload"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base, log_path)
        shared = list(temp.glob("snapid-metrics-*"))
        assert len(shared) == 1 and shared[0].is_dir(), shared  # made by the parent

        photos = [coloured(RED), coloured(GREEN)]

        def predict(i: int) -> int:
            files = [("files", ("photo.jpg", photos[i % 2], "image/jpeg"))]
            return httpx.post(base + PREDICT, files=files, timeout=30).status_code  # a new connection each

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(predict, range(n)))
        assert statuses == [200] * n
        answered = _per_worker(shared[0], "snapid_requests_total", route=PREDICT)
        assert len(answered) == 2 and sum(answered) == n and min(answered) > 0, answered  # both took a share
        time.sleep(metrics_service.REFRESH_S * 1.5)  # both workers have written their gauges since
        scrapes = [httpx.get(base + "/metrics", timeout=10).text for _ in range(6)]
        for text in scrapes:
            assert prom.value(text, "snapid_requests_total", method="POST", route=PREDICT, status="200") == n
            assert prom.value(text, "snapid_request_seconds_count", route=PREDICT) == n
            assert prom.value(text, "snapid_request_seconds_bucket", route=PREDICT, le="+Inf") == n
            assert 1 <= prom.value(text, "snapid_batch_size_count") <= n
            assert prom.value(text, "snapid_batch_size_sum") == n  # every photo was run once
            assert prom.value(text, "snapid_rejected_total") == 0
            assert prom.value(text, "snapid_workers") == 2
            assert prom.value(text, "snapid_queue_depth") == 0
            assert prom.value(text, "process_resident_memory_bytes") > 0
            assert prom.value(text, "process_cpu_seconds_total") > 0
        # the scrapes count too, each seeing those before it
        last = prom.value(scrapes[-1], "snapid_requests_total", method="GET", route="/metrics", status="200")
        assert last == len(scrapes) - 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log_path.read_text()
    assert not shared[0].exists()  # the shared folder is removed at exit


def _per_worker(folder, name: str, **labels: str) -> list[float]:
    """Each worker's own count, from its own file in the shared folder."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = []
    for file in sorted(folder.glob("counter_*.db")):
        counts.append(sum(s.value for m in MultiProcessCollector.merge([str(file)]) for s in m.samples
                          if s.name == name and labels.items() <= s.labels.items()))
    return counts


# --- the multiprocess machinery itself, in spawned processes (as uvicorn starts its workers) ---------------
def _worker(requests: int, batches: list[int], gauge: float) -> None:
    from snapid.serve.services.metrics import Metrics

    metrics = Metrics()
    metrics.gauges["snapid_queue_depth"] = lambda: gauge
    for i in range(requests):
        metrics.observe_request("GET", "/healthz/live", 200 if i % 3 else 503, 0.002)
    for size in batches:
        metrics.observe_batch(size)
    metrics.observe_rejected()
    metrics.refresh()


def _run_workers(path, *jobs) -> None:
    context = multiprocessing.get_context("spawn")
    os.environ[metrics_service.ENV] = str(path)
    try:
        processes = [context.Process(target=_worker, args=job) for job in jobs]
        for p in processes:
            p.start()
        for p in processes:
            p.join(60)
            assert p.exitcode == 0
    finally:
        del os.environ[metrics_service.ENV]


def test_counters_are_summed_over_processes_and_gauges_over_live_ones(tmp_path):
    _run_workers(tmp_path, (7, [1, 4], 2.0), (5, [8], 3.0))
    os.environ[metrics_service.ENV] = str(tmp_path)
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        before = generate_latest(registry).decode()
        # the workers exited: their live gauges go, their counts stay
        swept = metrics_service.sweep_dead_workers(str(tmp_path))
        assert len(swept) == 2
        after = generate_latest(registry).decode()
    finally:
        del os.environ[metrics_service.ENV]
    route = {"method": "GET", "route": "/healthz/live"}
    for text in (before, after):
        assert prom.value(text, "snapid_requests_total", **route, status="200") == 4 + 3
        assert prom.value(text, "snapid_requests_total", **route, status="503") == 3 + 2
        assert prom.total(text, "snapid_request_seconds_count") == 12
        assert prom.value(text, "snapid_batch_size_count") == 3 and prom.value(text, "snapid_batch_size_sum") == 13
        assert prom.value(text, "snapid_batch_size_bucket", le="4.0") == 2
        assert prom.value(text, "snapid_rejected_total") == 2
    assert prom.value(before, "snapid_queue_depth") == 5 and prom.value(before, "snapid_workers") == 2
    assert prom.value(after, "snapid_queue_depth") is None and prom.value(after, "snapid_workers") is None


def test_the_parent_makes_a_private_folder_for_several_workers_only(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics_service.ENV, str(tmp_path / "left-by-someone"))
    with metrics_service.serving_metrics_dir(1) as path:
        assert path is None and metrics_service.ENV not in os.environ  # one worker: this process's registry
    assert os.environ[metrics_service.ENV] == str(tmp_path / "left-by-someone")
    with metrics_service.serving_metrics_dir(3) as path:
        assert os.environ[metrics_service.ENV] == path and os.listdir(path) == []
        assert os.stat(path).st_mode & 0o077 == 0  # this user's only
        open(os.path.join(path, "counter_1.db"), "wb").close()
    assert not os.path.exists(path)
    assert os.environ[metrics_service.ENV] == str(tmp_path / "left-by-someone")


def test_one_process_needs_no_folder(settings, bundle):
    """create_app in this process, no PROMETHEUS_MULTIPROC_DIR: a registry of the app's own, so two apps
    in one process count apart."""
    from fastapi.testclient import TestClient

    from snapid.serve.app import create_app

    assert metrics_service.ENV not in os.environ
    with TestClient(create_app(settings, bundle=bundle)) as one, TestClient(create_app(settings, bundle=bundle)) as two:
        one.get("/healthz/live")
        one.get("/healthz/live")
        two.get("/healthz/live")
        route = {"method": "GET", "route": "/healthz/live", "status": "200"}
        assert prom.value(one.get("/metrics").text, "snapid_requests_total", **route) == 2
        assert prom.value(two.get("/metrics").text, "snapid_requests_total", **route) == 1
