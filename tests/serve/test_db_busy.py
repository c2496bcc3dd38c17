"""A write-locked database (a long import, another worker, a backup) on a real server: requests that must
write fail fast with 503 and Retry-After, and everything else keeps answering; predictions logged while
it was locked are written once it is free."""

from __future__ import annotations

import sqlite3
import time
import uuid

import httpx

from snapid.config import Settings
from snapid.serve.services.prediction_log import PredictionLog
from snapid.track.db import get_engine, transaction
from snapid.track.predictions import count_predictions
from tests.helpers import live_server
from tests.serve.conftest import RED, coloured, files


def _feedback(prediction_id: str, key: str) -> dict:
    return {"prediction_id": prediction_id, "client_key": key, "label": "red"}


def _metric(text: str, name: str) -> float:
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def test_a_locked_database_gets_503_with_retry_after_fast_and_predictions_still_answer(home, bundle):
    """BAD_INPUTS.md "20 parallel uploads … no 500 'database is locked'" and L2 ("503/429 with
    Retry-After"): feedback needs a write, so it gets 503 `db_busy` with Retry-After within the serving
    lock timeout, not a 500 after the 30 s busy timeout; predict and readiness need no write and answer."""
    settings = Settings(home=home.home, reload_poll_s=0, serve_db_timeout_s=1.0)
    with live_server(settings, bundle) as base, httpx.Client(base_url=base, timeout=20) as http:
        first = http.post("/api/v1/predict", files=files(coloured(RED))).json()["prediction_id"]
        assert http.post("/api/v1/feedback", json=_feedback(first, "before-lock")).status_code == 201  # logged
        lock = sqlite3.connect(home.database, timeout=0, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        try:
            began = time.monotonic()
            r = http.post("/api/v1/feedback", json=_feedback(first, "during-lock"))
            elapsed = time.monotonic() - began
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "db_busy" and set(r.json()) == {"error", "message"}
            assert int(r.headers["retry-after"]) >= 1 and elapsed < 5, elapsed
            began = time.monotonic()
            second = http.post("/api/v1/predict", files=files(coloured(RED)))
            assert second.status_code == 200 and time.monotonic() - began < 5
            assert http.get("/healthz/ready").status_code == 200
            time.sleep(1.5)  # the log's write is refused at least once while the lock is held
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        # the refused log write is retried, not dropped: feedback on the second prediction is stored
        r = http.post("/api/v1/feedback", json=_feedback(second.json()["prediction_id"], "after-lock"))
        assert r.status_code == 201, r.text
        metrics = http.get("/metrics").text
        assert _metric(metrics, "snapid_prediction_log_retried") >= 1
        assert _metric(metrics, "snapid_prediction_log_dropped") == 0


def test_the_log_keeps_rows_a_busy_database_refused_and_writes_them_later(home):
    """The prediction log: a write refused by a lock is retried after a pause and counted, not dropped."""
    engine = get_engine(f"sqlite:///{home.database}", lock_timeout_s=0.2)
    log = PredictionLog(lambda: engine, linger_s=0.01, retry_s=0.2)
    log.start()
    lock = sqlite3.connect(home.database, timeout=0, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        log.add({"id": str(uuid.uuid4()), "model_sha256": "0" * 64, "top": [{"id": "red", "score": 0.9}]})
        deadline = time.monotonic() + 5
        while log.retried == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.retried >= 1 and log.written == 0 and log.dropped == 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    log.flush()
    log.stop()
    assert (log.written, log.dropped) == (1, 0)
    with transaction(engine) as s:
        assert count_predictions(s) == 1
