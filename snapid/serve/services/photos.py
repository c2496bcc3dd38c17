"""The server's side of saved photos: keeping the consented photos of a prediction, and the background
sweep of saved photos and old predictions.

The sweep runs from the app's lifespan: at startup it removes orphan files (a save killed between its
file and its row), photos past ``keep_days`` and predictions past ``prediction_keep_days``
(`prune_predictions`), then repeats both retention sweeps every ``sweep_interval_s``. Startup and
requests never wait for it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from anyio import to_thread
from sqlalchemy import Engine

from snapid.feedback.storage import PhotoStore, QuotaFull
from snapid.track import predictions as track_predictions
from snapid.track.db import transaction
from snapid.track.tables import utcnow

log = logging.getLogger("snapid.serve")
Kept = Literal["not_asked", "kept", "quota_full"]
PRUNE_BATCH = 1000       # predictions deleted per transaction: other writers wait for one small batch at most
QUOTA_LOG_EVERY_S = 600.0  # a full store is logged at most this often, not once per request
_quota_logged = [float("-inf")]


async def keep_photos(store: Callable[[], PhotoStore], decode_slots: asyncio.Semaphore, photos: list[bytes], *,
                      consent: bool, prediction_id: str) -> Kept:
    """Keep the photos of one prediction when the user consented. Returns what happened, for the
    answer's ``kept``: not_asked (no consent: nothing written, the store not even opened), kept, or
    quota_full (the store is at SNAPID_PHOTO_QUOTA_BYTES: nothing kept, the answer still comes). Raises
    StorageFull (507) with nothing kept when the disk is full.

    Full-size decodes outside the predictor (kept photos, hand-off thumbnails) take one of the
    ``decode_slots`` (``decode_threads`` of them): a 40 MP photo costs hundreds of MB while it is
    decoded, so they must not run 40 at a time in the thread pool."""
    if not consent:
        return "not_asked"
    photo_store = store()
    try:
        async with decode_slots:
            await to_thread.run_sync(functools.partial(photo_store.save_all, photos, consent=True,
                                                       prediction_id=prediction_id))
    except QuotaFull as exc:
        now = time.monotonic()
        if now - _quota_logged[0] >= QUOTA_LOG_EVERY_S:
            _quota_logged[0] = now
            log.warning("%s (logged at most every %g s); raise the quota or lower SNAPID_KEEP_DAYS", exc.message,
                        QUOTA_LOG_EVERY_S)
        return "quota_full"
    return "kept"


def _sweep_once(store: Callable[[], PhotoStore], engine: Callable[[], Engine], *, orphans: bool,
                prediction_keep_days: float) -> None:
    photo_store = store()
    if orphans:
        photo_store.sweep_orphans()
    photo_store.sweep_retention()  # first: a prediction whose photos went may go too
    prune_predictions(engine(), keep_days=prediction_keep_days)


def prune_predictions(engine: Engine, *, keep_days: float, batch: int = PRUNE_BATCH,
                      now: datetime | None = None) -> int:
    """Delete predictions answered more than ``keep_days`` ago that have no feedback and no kept photo,
    ``batch`` rows per transaction, until none is left (0 days: keep them all). Returns how many went."""
    if keep_days <= 0:
        return 0
    before = (now or utcnow()) - timedelta(days=keep_days)
    total = 0
    while True:
        with transaction(engine) as session:
            deleted = track_predictions.prune_predictions(session, before=before, limit=batch)
        total += deleted
        if deleted < batch:
            break
    if total:
        log.info("retention: deleted %d predictions older than %g days (no feedback, no kept photo)", total, keep_days)
    return total


async def sweep_forever(store: Callable[[], PhotoStore], engine: Callable[[], Engine], *, interval_s: float,
                        prediction_keep_days: float) -> None:
    """The sweep: orphans and retention at once, then retention every ``interval_s`` (0: once only)."""
    orphans = True
    while True:
        try:
            await asyncio.to_thread(_sweep_once, store, engine, orphans=orphans,
                                    prediction_keep_days=prediction_keep_days)
        except Exception:  # the database or disk being unavailable must not stop the server
            log.exception("saved-photo sweep failed; retrying in %g s", interval_s or 60)
        else:
            orphans = False
        if interval_s <= 0 and not orphans:
            return
        await asyncio.sleep(interval_s if interval_s > 0 else 60)
