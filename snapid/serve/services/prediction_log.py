"""Answered predictions, written to the database by one background thread in small batches.

A request only puts a small dict on a bounded in-memory queue, so recording never adds a database
round trip to the request path. The writer waits up to ``linger_s`` for more rows after the first
and commits them in one transaction: a one-row transaction costs about 0.5 ms of Python with the GIL
held (the event loop waits for it), fifteen rows 0.09 ms each. A crash loses at most the lingering
rows; a stop or `flush` writes at once. When the database is locked by another writer (an import, a
backup, another worker) past the serving lock timeout, the rows are kept and written again after
``retry_s`` (counted in ``retried``); the answers never waited for them. If the database is slower than
the traffic for long enough to fill the queue, or fails otherwise, rows are dropped and counted rather
than letting memory grow; such a prediction_id cannot get feedback later, which the log says.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from snapid.track.db import is_busy, transaction
from snapid.track.predictions import record_predictions

log = logging.getLogger("snapid.serve")
BATCH = 500
_STOP = object()


class PredictionLog:
    def __init__(self, engine: Callable[[], Engine], *, max_pending: int = 10_000, linger_s: float = 0.25,
                 retry_s: float = 1.0):
        self._engine, self.linger_s, self.retry_s, self.max_pending = engine, linger_s, retry_s, max_pending
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        self.commits = 0
        self.retried = 0  # rows whose write a busy database refused, kept for a later try

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapid-prediction-log", daemon=True)
        self._thread.start()

    def add(self, row: dict) -> None:
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("prediction log is behind the traffic: %d predictions not recorded", self.dropped)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything added so far is written (tests, shutdown)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def _run(self) -> None:
        stop, held = False, []  # held: rows a busy database refused, tried again first
        while not stop:
            rows, events = [], []
            try:
                item = self._queue.get(timeout=self.retry_s if held else None)
            except queue.Empty:
                item = None  # time to try the held rows again
            deadline = time.monotonic() + self.linger_s
            while item is not None:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    rows.append(item)
                if stop or events or len(rows) >= BATCH:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            was_held = bool(held)
            held = self._write(held + rows, keep=not stop)
            if held and not was_held:  # once per episode, not once per try
                log.warning("the database is locked by another writer: predictions are kept and written "
                            "again every %g s", self.retry_s)
            elif was_held and not held:
                log.info("the database is free again: the kept predictions are handled")
            for event in events:
                event.set()

    def _write(self, rows: list[dict], *, keep: bool = True) -> list[dict]:
        """Write ``rows`` in one transaction; returns the rows to try again (a busy database), else []."""
        if not rows:
            return []
        try:
            with transaction(self._engine()) as session:
                written = record_predictions(session, rows=rows)
            self.written += written  # counted once committed: the commit is what a lock can refuse
            self.commits += 1
            return []
        except Exception as exc:  # the database being busy or down must not stop predictions
            if keep and is_busy(exc):
                kept = rows[-self.max_pending:]  # memory stays bounded: the oldest go first
                self.dropped += len(rows) - len(kept)
                self.retried += len(kept)
                return kept
            self.dropped += len(rows)
            log.exception("could not record %d predictions", len(rows))
            return []


def model_fields(model) -> dict:
    """What a prediction row records about its model; the dataset ties feedback to the right dataset."""
    info = model.info
    return {"model_name": info["name"], "model_version": info["version"], "model_sha256": info["sha256"],
            "dataset": str(model.bundle.manifest.get("dataset", ""))}
