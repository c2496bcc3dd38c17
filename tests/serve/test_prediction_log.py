"""The prediction log: rows that arrive close together share one transaction, and flush and stop write
what is pending at once rather than after the linger."""

from __future__ import annotations

import time
import uuid

from snapid.serve.services.prediction_log import PredictionLog
from snapid.track.db import transaction
from snapid.track.predictions import count_predictions


def _row() -> dict:
    return {"id": str(uuid.uuid4()), "model_sha256": "0" * 64, "top": [{"id": "red", "score": 0.9}]}


def test_rows_close_together_share_a_transaction(engine):
    log = PredictionLog(lambda: engine, linger_s=0.5)
    log.start()
    try:
        for _ in range(20):
            log.add(_row())
            time.sleep(0.002)  # a busy server's pace: rows trickle in, one per request
        began = time.monotonic()
        log.flush()
        assert time.monotonic() - began < 0.4  # flush does not wait out the linger
        assert (log.written, log.dropped) == (20, 0)
        assert log.commits <= 2, log.commits  # without the linger: one commit per row
        with transaction(engine) as s:
            assert count_predictions(s) == 20
    finally:
        log.stop()


def test_stop_writes_pending_rows_at_once(engine):
    log = PredictionLog(lambda: engine, linger_s=5.0)
    log.start()
    log.add(_row())
    began = time.monotonic()
    log.stop()
    assert time.monotonic() - began < 2.0 and log.written == 1
    with transaction(engine) as s:
        assert count_predictions(s) == 1
