"""QR phone hand-off: the desktop opens a session and shows its QR code; the phone uploads to it; the
desktop receives each photo's thumbnail and answer by server-sent events (or polls /results).

Tokens and keys: see snapid.serve.services.handoff_tokens (401 bad token, 403 another session's, 410 expired,
409 single-use token used, 429 session full or too many sessions). The sessions are
snapid.serve.services.handoff's, the event stream handoff_events', an uploaded photo is identified by
snapid.serve.services.identify."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from snapid.config import Settings
from snapid.serve.bodies import read_photos
from snapid.serve.deps import DrainingDep, HandoffDep, IdentifyDep, PredictorDep, SettingsDep, StreamsDep
from snapid.serve.routes import error_responses
from snapid.serve.schemas import SessionCreated, SessionResults, SessionUpload
from snapid.serve.services.handoff_events import events
from snapid.serve.services.phone_link import phone_base, qr_svg

SESSION_ID = PathParam(pattern=r"^[0-9a-f]{32}$", description="The session_id from POST /api/v1/sessions.")
LANG = Query(None, max_length=16, pattern=r"^[A-Za-z_-]+$", description="Language of names, cards and warnings.")

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "maxItems": 1,
                             "items": {"type": "string", "format": "binary"},
                             "description": "One photo: JPEG, PNG, WebP, GIF or BMP."}}}}}}}


def _phone_url(request: Request, settings: Settings, token: str) -> tuple[str, str]:
    base, note = phone_base(public_url=settings.public_url, request_host=request.url.hostname or "",
                            request_port=request.url.port, scheme=request.url.scheme)
    return f"{base}/m/{token}", note


@router.post("", status_code=201, response_model=SessionCreated, responses=error_responses(422, 429, 503))
async def create_session(request: Request, handoff: HandoffDep, settings: SettingsDep, lang: str | None = LANG,
                         single: bool = Query(False, description="The phone link takes one photo (single-use token).")):
    """Open a hand-off session; the answer holds the desktop key (once), the phone URL and its QR code."""
    client = request.client.host if request.client else "unknown"
    made = await run_in_threadpool(handoff.create, client=client, lang=lang or "", single=single)
    url, note = _phone_url(request, settings, made["token"])
    body = SessionCreated(session_id=made["session_id"], desktop_key=made["desktop_key"], phone_url=url,
                          qr_svg=qr_svg(url), expires_at=_iso(made["expires"]),
                          expires_in_s=round(made["expires"] - time.time(), 1), max_uploads=made["max_uploads"],
                          single_use=made["single_use"], note=note)
    return JSONResponse(body.model_dump(), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/{session_id}/qr.svg", response_class=Response, responses={
    200: {"content": {"image/svg+xml": {}}, "description": "The QR code of the phone URL."},
    **error_responses(401, 404, 422)})
async def session_qr(request: Request, handoff: HandoffDep, settings: SettingsDep, session_id: str = SESSION_ID,
                     key: str | None = Query(None, max_length=128),
                     x_snapid_key: str | None = Header(None, max_length=128)) -> Response:
    """The QR code again (e.g. to enlarge it), for the desktop holding the key."""
    row = await run_in_threadpool(handoff.desktop_session, session_id, x_snapid_key or key)
    url, _ = _phone_url(request, settings, handoff.phone_token(row))
    return Response(qr_svg(url), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/{session_id}/results", response_model=SessionResults, responses=error_responses(401, 404, 422, 503))
async def session_results(handoff: HandoffDep, predictor: PredictorDep, session_id: str = SESSION_ID,
                          after: int = Query(0, ge=0, le=10_000, description="Only uploads after this position."),
                          lang: str | None = LANG, key: str | None = Query(None, max_length=128),
                          x_snapid_key: str | None = Header(None, max_length=128)) -> dict:
    """Polling fallback of /events: the uploads after a position, and the warnings across the session."""
    row = await run_in_threadpool(handoff.desktop_session, session_id, x_snapid_key or key)
    return await run_in_threadpool(handoff.results, row, model=predictor.model, after=after, lang=lang)


@router.get("/{session_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "event: upload (data: SessionResults with one "
          "upload), event: expired; each stream ends after a minute and the browser reconnects."},
    **error_responses(401, 404, 422, 429, 503)})
async def session_events(request: Request, handoff: HandoffDep, predictor: PredictorDep, streams: StreamsDep,
                         draining: DrainingDep, session_id: str = SESSION_ID, lang: str | None = LANG,
                         after: int = Query(0, ge=0, le=10_000), key: str | None = Query(None, max_length=128),
                         last_event_id: str | None = Header(None, max_length=18, pattern=r"^([0-9]{1,18})?$",
                                                            description="The id of the last event received "
                                                                        "(EventSource sends it on reconnecting).")
                         ) -> StreamingResponse:
    """Server-sent events: one `upload` event per photo as it arrives (id = its position). Open streams are
    capped per session, per client address and per worker (429 `too_many_streams`; poll /results then)."""
    row = await run_in_threadpool(handoff.desktop_session, session_id, key or request.headers.get("x-snapid-key"))
    start = int(last_event_id) if last_event_id else after  # ASCII digits only: the pattern above
    client = request.client.host if request.client else ""  # behind a trusted proxy: the client it reports
    give_back = streams.take(session_id=row["id"], client=client)
    return HeldStream(events(handoff, predictor, row, after=start, lang=lang, draining=draining), give_back=give_back,
                      media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/{session_id}/upload", response_model=SessionUpload, openapi_extra=UPLOAD_BODY,
             responses=error_responses(400, 401, 403, 408, 409, 410, 413, 415, 422, 429, 503))
async def session_upload(request: Request, handoff: HandoffDep, identify: IdentifyDep, settings: SettingsDep,
                         session_id: str = SESSION_ID,
                         token: str | None = Query(None, max_length=200,
                                                   description="The phone token (or X-Snapid-Token)."),
                         x_snapid_token: str | None = Header(None, max_length=200)) -> SessionUpload:
    """The phone sends one photo: it is identified, and its thumbnail and answer go to the desktop page."""
    row = await run_in_threadpool(handoff.authorize_phone, session_id, x_snapid_token or token)
    identify.check_capacity()
    photos = await read_photos(request, max_files=1)
    return SessionUpload(**await identify.handoff_photo(handoff, row, photos[0], k=settings.top_k))


class HeldStream(StreamingResponse):
    """A streaming response that gives its place back when it ends: finished, cancelled when the client
    went away, or failed."""

    def __init__(self, content, *, give_back: Callable[[], None], **kw):
        super().__init__(content, **kw)
        self._give_back = give_back

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._give_back()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
