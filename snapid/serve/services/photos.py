"""The server's side of saved photos: one PhotoStore per app, the call the predict route makes to
keep consented photos, the JSON body reader of the feedback and review routes, and the sweeper.

The sweeper runs in the background from the feedback router's lifespan: at startup it removes
orphan files (a save killed between its file and its row), photos past ``keep_days`` and predictions
past ``prediction_keep_days`` (`prune_predictions`), then repeats both retention sweeps every
``sweep_interval_s``. Startup and requests never wait for it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Literal

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from snapid import images
from snapid.feedback.storage import PhotoStore, QuotaFull
from snapid.track import predictions as track_predictions
from snapid.track.db import transaction
from snapid.track.tables import utcnow
from snapid.serve.services.uploads import BodyTooLarge, InvalidRequest
from snapid.workspace import Workspace

log = logging.getLogger("snapid.serve")
Kept = Literal["not_asked", "kept", "quota_full"]
PRUNE_BATCH = 1000       # predictions deleted per transaction: other writers wait for one small batch at most
QUOTA_LOG_EVERY_S = 600.0  # a full store is logged at most this often, not once per request
_quota_logged = [float("-inf")]


def photo_store(app: FastAPI) -> PhotoStore:
    """The app's PhotoStore, made on first use (the database opens lazily)."""
    store = getattr(app.state, "photo_store", None)
    if store is None:
        s = app.state.settings
        limits = images.DecodeLimits.from_settings(s, upload=True)
        store = PhotoStore(Workspace.at(s.home).uploads, app.state.db_engine(), keep_days=s.keep_days,
                           quota_bytes=s.photo_quota_bytes, limits=limits)
        app.state.photo_store = store
    return store


async def keep_photos(request: Request, photos: list[bytes], *, consent: bool, prediction_id: str) -> Kept:
    """For the predict route: keep the photos of one prediction when the user consented. Returns what
    happened, for the answer's ``kept``: not_asked (no consent: nothing written), kept, or quota_full
    (the store is at SNAPID_PHOTO_QUOTA_BYTES: nothing kept, the answer still comes). Raises
    StorageFull (507) with nothing kept when the disk is full."""
    if not consent:
        return "not_asked"
    store = photo_store(request.app)
    try:
        async with decode_slots(request.app):
            await run_in_threadpool(store.save_all, photos, consent=True, prediction_id=prediction_id)
    except QuotaFull as exc:
        now = time.monotonic()
        if now - _quota_logged[0] >= QUOTA_LOG_EVERY_S:
            _quota_logged[0] = now
            log.warning("%s (logged at most every %g s); raise the quota or lower SNAPID_KEEP_DAYS", exc.message,
                        QUOTA_LOG_EVERY_S)
        return "quota_full"
    return "kept"


def decode_slots(app: FastAPI) -> asyncio.Semaphore:
    """Full-size decodes outside the predictor (kept photos, hand-off thumbnails) take one of
    ``decode_threads`` slots: a 40 MP photo costs hundreds of MB while it is decoded, so they must
    not run 40 at a time in the default thread pool."""
    slots = getattr(app.state, "decode_slots", None)
    if slots is None:
        slots = app.state.decode_slots = asyncio.Semaphore(max(1, app.state.settings.decode_threads))
    return slots


async def read_json(request: Request, *, limit: int):
    """A small JSON body: 413 above ``limit`` bytes (declared or counted), 422 when it is not JSON
    or nests deeper than the parser allows."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the JSON body ({declared} bytes) is above the limit of {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise InvalidRequest(f"send the body as application/json (got Content-Type {kind or 'none'!r})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the JSON body is above the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except RecursionError:
        raise InvalidRequest("the JSON body nests too deeply") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON ({exc})") from None


def _sweep_once(app: FastAPI, *, orphans: bool) -> None:
    store = photo_store(app)
    if orphans:
        store.sweep_orphans()
    store.sweep_retention()  # first: a prediction whose photos went may go too
    prune_predictions(app.state.db_engine(), keep_days=app.state.settings.prediction_keep_days)


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


async def _sweep_loop(app: FastAPI) -> None:
    interval = app.state.settings.sweep_interval_s
    orphans = True
    while True:
        try:
            await asyncio.to_thread(_sweep_once, app, orphans=orphans)
        except Exception:  # the database or disk being unavailable must not stop the server
            log.exception("saved-photo sweep failed; retrying in %g s", interval or 60)
        else:
            orphans = False
        if interval <= 0 and not orphans:
            return
        await asyncio.sleep(interval if interval > 0 else 60)


@asynccontextmanager
async def sweeper(app: FastAPI):
    task = asyncio.create_task(_sweep_loop(app), name="snapid-photo-sweep")
    app.state.photo_sweep = task
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
