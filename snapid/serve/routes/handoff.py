"""QR phone hand-off: the desktop opens a session and shows its QR code; the phone uploads to it; the
desktop receives each photo's thumbnail and answer by server-sent events (or polls /results).

Tokens and keys: see snapid.serve.services.handoff_tokens (401 bad token, 403 another session's, 410 expired,
409 single-use token used, 429 session full or too many sessions)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from snapid.serve.routes import error_responses
from snapid.serve.schemas import SessionCreated, SessionResults, SessionUpload
from snapid.serve.services import answers
from snapid.serve.services.handoff import handoff, render
from snapid.serve.services.photos import decode_slots
from snapid.serve.services.phone_link import phone_base, qr_svg
from snapid.serve.services.prediction_log import model_fields
from snapid.serve.services.redact import install_log_redaction
from snapid.serve.services.streams import HeldStream
from snapid.serve.services.thumbnails import thumbnail
from snapid.serve.services.uploads import read_photos
from snapid.track.db import is_busy

STREAM_MAX_S = 60.0     # one event stream lasts at most this long; EventSource reconnects with Last-Event-ID
POLL_S = 1.0            # how often a stream looks at the database (uploads received by other workers)
KEEPALIVE_S = 15.0
SWEEP_S = 60.0
SESSION_ID = PathParam(pattern=r"^[0-9a-f]{32}$", description="The session_id from POST /api/v1/sessions.")
log = logging.getLogger("snapid.serve")
LANG = Query(None, max_length=16, pattern=r"^[A-Za-z_-]+$", description="Language of names, cards and warnings.")


@asynccontextmanager
async def _sweeper(app: FastAPI):
    """Expired sessions (their thumbnails and answers) are deleted every minute."""
    install_log_redaction()

    async def loop():
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await asyncio.to_thread(handoff(app).sweep)
            except Exception:  # the database being away must not stop the server
                log.exception("hand-off session sweep failed; retrying in %g s", SWEEP_S)

    task = asyncio.create_task(loop(), name="snapid-session-sweep")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], lifespan=_sweeper)
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string", "format": "binary"},
                             "description": "One photo: JPEG, PNG, WebP, GIF or BMP."}}}}}}}


def _phone_url(request: Request, token: str) -> tuple[str, str]:
    base, note = phone_base(public_url=request.app.state.settings.public_url, request_host=request.url.hostname or "",
                                   request_port=request.url.port, scheme=request.url.scheme)
    return f"{base}/m/{token}", note


@router.post("", status_code=201, response_model=SessionCreated, responses=error_responses(422, 429, 503))
async def create_session(request: Request, lang: str | None = LANG,
                         single: bool = Query(False, description="The phone link takes one photo (single-use token).")):
    """Open a hand-off session; the answer holds the desktop key (once), the phone URL and its QR code."""
    client = request.client.host if request.client else "unknown"
    made = await run_in_threadpool(handoff(request.app).create, client=client, lang=lang or "", single=single)
    url, note = _phone_url(request, made["token"])
    body = SessionCreated(session_id=made["session_id"], desktop_key=made["desktop_key"], phone_url=url,
                          qr_svg=qr_svg(url), expires_at=_iso(made["expires"]),
                          expires_in_s=round(made["expires"] - time.time(), 1), max_uploads=made["max_uploads"],
                          single_use=made["single_use"], note=note)
    return JSONResponse(body.model_dump(), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/{session_id}/qr.svg", response_class=Response, responses={
    200: {"content": {"image/svg+xml": {}}, "description": "The QR code of the phone URL."}, **error_responses(401, 404, 422)})
async def session_qr(request: Request, session_id: str = SESSION_ID, key: str | None = Query(None, max_length=128),
                     x_snapid_key: str | None = Header(None, max_length=128)) -> Response:
    """The QR code again (e.g. to enlarge it), for the desktop holding the key."""
    service = handoff(request.app)
    row = await run_in_threadpool(service.desktop_session, session_id, x_snapid_key or key)
    url, _ = _phone_url(request, service.phone_token(row))
    return Response(qr_svg(url), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/{session_id}/results", response_model=SessionResults, responses=error_responses(401, 404, 422, 503))
async def session_results(request: Request, session_id: str = SESSION_ID,
                          after: int = Query(0, ge=0, le=10_000, description="Only uploads after this position."),
                          lang: str | None = LANG, key: str | None = Query(None, max_length=128),
                          x_snapid_key: str | None = Header(None, max_length=128)) -> dict:
    """Polling fallback of /events: the uploads after a position, and the warnings across the session."""
    service = handoff(request.app)
    row = await run_in_threadpool(service.desktop_session, session_id, x_snapid_key or key)
    return await run_in_threadpool(service.results, row, model=request.app.state.predictor.model, after=after, lang=lang)


@router.get("/{session_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "event: upload (data: SessionResults with one "
          "upload), event: expired; each stream ends after a minute and the browser reconnects."},
    **error_responses(401, 404, 422, 429, 503)})
async def session_events(request: Request, session_id: str = SESSION_ID, lang: str | None = LANG,
                         after: int = Query(0, ge=0, le=10_000), key: str | None = Query(None, max_length=128),
                         last_event_id: str | None = Header(None, max_length=18, pattern=r"^([0-9]{1,18})?$",
                                                            description="The id of the last event received "
                                                                        "(EventSource sends it on reconnecting).")
                         ) -> StreamingResponse:
    """Server-sent events: one `upload` event per photo as it arrives (id = its position). Open streams are
    capped per session, per client address and per worker (429 `too_many_streams`; poll /results then)."""
    service = handoff(request.app)
    row = await run_in_threadpool(service.desktop_session, session_id, key or request.headers.get("x-snapid-key"))
    start = int(last_event_id) if last_event_id else after  # ASCII digits only: the pattern above
    client = request.client.host if request.client else ""  # behind a trusted proxy: the client it reports
    give_back = request.app.state.streams.take(session_id=row["id"], client=client)
    return HeldStream(_stream(request, row, start, lang), give_back=give_back, media_type="text/event-stream",
                      headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(request: Request, row: dict, after: int, lang: str | None):
    service, state = handoff(request.app), request.app.state
    deadline, quiet_since = time.monotonic() + STREAM_MAX_S, time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() < deadline and not state.draining:
        try:
            page = await run_in_threadpool(service.results, row, model=state.predictor.model, after=after, lang=lang)
        except OperationalError as exc:
            if not is_busy(exc):
                raise
            await service.hub.wait(row["id"], POLL_S)  # the database is locked for now: look again shortly
            continue
        for item in page["uploads"]:
            after = item["position"]
            yield _event("upload", {**page, "uploads": [item]}, event_id=after)
            quiet_since = time.monotonic()
        if page["expired"]:
            yield _event("expired", {"session_id": row["id"]})
            return
        if time.monotonic() - quiet_since > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await service.hub.wait(row["id"], POLL_S)


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


@router.post("/{session_id}/upload", response_model=SessionUpload, openapi_extra=UPLOAD_BODY,
             responses=error_responses(400, 401, 403, 408, 409, 410, 413, 415, 422, 429, 503))
async def session_upload(request: Request, session_id: str = SESSION_ID,
                         token: str | None = Query(None, max_length=200, description="The phone token (or X-Snapid-Token)."),
                         x_snapid_token: str | None = Header(None, max_length=200)) -> SessionUpload:
    """The phone sends one photo: it is identified, and its thumbnail and answer go to the desktop page."""
    state, service = request.app.state, handoff(request.app)
    row = await run_in_threadpool(service.authorize_phone, session_id, x_snapid_token or token)
    state.predictor.check_capacity()
    photos = await read_photos(request, max_files=1)
    result = await state.predictor.predict(photos)
    async with decode_slots(request.app):
        thumb = await run_in_threadpool(thumbnail, photos[0][1], state.predictor.limits)
    body = answers.answer(result.model, result.probs, k=state.settings.top_k, lang=row["lang"] or None)
    stored = {"prediction_id": str(uuid.uuid4()), "unknown": body["unknown"],
              "predictions": [{k: p[k] for k in ("index", "id", "name", "score")} for p in body["predictions"]]}
    slot = await run_in_threadpool(service.store, session_id, thumbnail=thumb, result=stored)
    state.prediction_log.add({"id": stored["prediction_id"], **model_fields(result.model),
                              "unknown": body["unknown"], "n_photos": 1,
                              "top": [{"id": p["id"], "score": p["score"]} for p in body["predictions"]]})
    session = await run_in_threadpool(service.results, row, model=result.model, after=slot["position"], lang=row["lang"] or None)
    return SessionUpload(**slot, **render(result.model, stored, row["lang"] or None), warnings=session["warnings"])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()
