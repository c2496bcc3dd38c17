"""The server's side of saved photos: one PhotoStore per app, the call the predict route makes to
keep consented photos, the JSON body reader of the feedback and review routes, and the sweeper.

The sweeper runs in the background from the feedback router's lifespan: at startup it removes
orphan files (a save killed between its file and its row) and photos past ``keep_days``, then
repeats the retention sweep every ``sweep_interval_s``. Startup never waits for it."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from snapid import images
from snapid.feedback.storage import PhotoStore
from snapid.serve.services.uploads import BodyTooLarge, InvalidRequest
from snapid.workspace import Workspace

log = logging.getLogger("snapid.serve")


def photo_store(app: FastAPI) -> PhotoStore:
    """The app's PhotoStore, made on first use (the database opens lazily)."""
    store = getattr(app.state, "photo_store", None)
    if store is None:
        s = app.state.settings
        limits = images.DecodeLimits(max_pixels=s.max_pixels, min_side=s.min_side, max_bytes=s.max_body_bytes,
                                     timeout_s=s.decode_timeout_s)
        store = PhotoStore(Workspace.at(s.home).uploads, app.state.db_engine(), keep_days=s.keep_days, limits=limits)
        app.state.photo_store = store
    return store


async def keep_photos(request: Request, photos: list[bytes], *, consent: bool, prediction_id: str) -> list[str]:
    """For the predict route: keep the photos of one prediction when the user consented (else nothing
    is written and [] is returned). Raises StorageFull (507) with nothing kept when the disk is full."""
    if not consent:
        return []
    store = photo_store(request.app)
    async with decode_slots(request.app):
        return await run_in_threadpool(store.save_all, photos, consent=True, prediction_id=prediction_id)


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
    store.sweep_retention()


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
