"""The hand-off sessions of one app: open, authorise a phone, store what it sent, read results, sweep.

Synchronous database work (routes call it in the thread pool), save `sweep_forever`, which the app's
lifespan runs; the database and the server secret are opened on first use. The secrets and their checks
are in snapid.serve.services.handoff_tokens. Answers are stored as scores only and rendered when read, so
the desktop gets cards and warnings in whatever language it asks for at that moment."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy import Engine

from snapid.errors import NotFound, SnapidError
from snapid.serve.services import answers
from snapid.serve.services import handoff_tokens as tokens
from snapid.serve.services.model import LoadedModel
from snapid.serve.services.pubsub import Hub
from snapid.serve.services.ratelimit import RateLimiter
from snapid.serve.services.thumbnails import data_uri
from snapid.track import sessions as track
from snapid.track.db import transaction

log = logging.getLogger("snapid.serve")
PAGE_LIMIT = 50
MAX_LIVE_SESSIONS = 1000
SWEEP_S = 60.0


class TooMany(SnapidError):
    status = 429

    def __init__(self, message: str, *, code: str, retry_after: int):
        super().__init__(message, code=code)
        self.retry_after = retry_after


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Handoff:
    """``engine`` and ``secret`` are called on first use (the database opens, the secret file is read or made)."""

    def __init__(self, engine: Callable[[], Engine], *, secret: Callable[[], bytes], ttl_s: float, max_uploads: int,
                 per_minute: int):
        self._engine, self._secret, self.ttl_s, self.max_uploads = engine, secret, ttl_s, max(1, max_uploads)
        self.limiter = RateLimiter(max(1, per_minute))
        self.hub = Hub()

    @property
    def engine(self) -> Engine:
        return self._engine()

    @cached_property
    def secret(self) -> bytes:
        return self._secret()

    # --- desktop --------------------------------------------------------------------------------
    def create(self, *, client: str, lang: str, single: bool) -> dict:
        """A new session: its id, the desktop key (shown once), the phone token and the expiry."""
        if not self.limiter.allow(client):
            raise TooMany("too many hand-off sessions from this address; wait a minute", code="too_many_sessions",
                          retry_after=60)
        now = time.time()
        session_id, nonce = uuid.uuid4().hex, secrets.token_hex(16)
        key, digest = tokens.new_key()
        expires = int(now + self.ttl_s)
        with transaction(self.engine) as s:
            track.delete_expired(s, before=_utc(now))  # keeps the table small without a timer
            if track.count_live(s, now=_utc(now)) >= MAX_LIVE_SESSIONS:
                raise TooMany("too many open hand-off sessions; try again in a few minutes", code="too_many_sessions",
                              retry_after=60)
            track.create_session(s, session_id=session_id, nonce=nonce, desktop_sha256=digest,
                                 max_uploads=1 if single else self.max_uploads, single_use=single, lang=lang,
                                 client=client, expires_at=_utc(expires))
        token = tokens.sign_token(self.secret, session_id=session_id, expires=expires, nonce=nonce)
        return {"session_id": session_id, "desktop_key": key, "token": token, "expires": expires,
                "max_uploads": 1 if single else self.max_uploads, "single_use": single}

    def desktop_session(self, session_id: str, key: str | None) -> dict:
        """The session row when ``key`` is its desktop key; 404 when there is no such (or no longer a) session."""
        with transaction(self.engine) as s:
            row = track.get_session(s, session_id=session_id)
        if row is None:
            raise NotFound(f"no hand-off session {session_id}; it may have expired and been removed")
        tokens.check_key(key, row["desktop_sha256"])
        return row

    def phone_token(self, row: dict) -> str:
        return tokens.sign_token(self.secret, session_id=row["id"], expires=int(row["expires_at"].timestamp()),
                                 nonce=row["nonce"])

    def results(self, row: dict, *, model: LoadedModel | None, after: int, lang: str | None) -> dict:
        """Uploads after position ``after`` (thumbnails as data URIs), and the warnings across all of them."""
        with transaction(self.engine) as s:
            row = track.get_session(s, session_id=row["id"]) or {**row, "expires_at": datetime.min.replace(tzinfo=UTC)}
            page = track.uploads_after(s, session_id=row["id"], after=after, limit=PAGE_LIMIT)
            everything = track.session_results(s, session_id=row["id"])  # at most max_uploads rows
        lang = lang or row["lang"] or None
        items = [{"position": u["position"], "received_at": u["created_at"].isoformat(),
                  "thumbnail": data_uri(u["thumbnail"]), **render(model, u["result"], lang)} for u in page]
        recognised = answers.recognised((u["position"], u["result"]) for u in everything)
        warnings = answers.warnings_for(model, recognised, lang) if model is not None else []
        expired = row["expires_at"] <= datetime.now(UTC)
        return {"session_id": row["id"], "expires_at": row["expires_at"].isoformat(), "expired": expired,
                "received": row["n_uploads"], "max_uploads": row["max_uploads"], "uploads": items, "warnings": warnings}

    # --- phone ------------------------------------------------------------------------------------
    def authorize_phone(self, session_id: str, token: str | None) -> dict:
        """The session a phone may upload to now; 401 / 403 / 410 / 409 / 429 otherwise (checked again on store)."""
        claims = tokens.verify_token(self.secret, token, session_id=session_id, now=time.time())
        with transaction(self.engine) as s:
            row = track.get_session(s, session_id=session_id)
        if row is None or not secrets.compare_digest(row["nonce"], claims.nonce):
            raise tokens.session_expired()  # swept, or a token of an earlier session with this id
        self._check_room(row)
        return row

    def store(self, session_id: str, *, thumbnail: bytes, result: dict) -> dict:
        """Take the next slot and store the upload in one transaction; 409 / 429 when there is no room."""
        with transaction(self.engine) as s:
            position = track.take_slot(s, session_id=session_id, now=datetime.now(UTC))
            if position is None:
                row = track.get_session(s, session_id=session_id)
                if row is None:
                    raise tokens.session_expired()
                self._check_room(row, full=True)
            track.add_upload(s, session_id=session_id, position=position, thumbnail=thumbnail, result=result)
            row = track.get_session(s, session_id=session_id)
        self.hub.notify(session_id)
        return {"position": position, "remaining": row["max_uploads"] - row["n_uploads"]}

    @staticmethod
    def _check_room(row: dict, *, full: bool = False) -> None:
        if row["expires_at"] <= datetime.now(UTC):
            raise tokens.session_expired()
        if row["single_use"] and (full or row["n_uploads"] >= 1):
            raise SnapidError("this phone link was for one photo and has been used; scan a new QR code",
                              code="token_used", status=409)
        if full or row["n_uploads"] >= row["max_uploads"]:
            raise TooMany(f"this hand-off session already has its {row['max_uploads']} photos; open a new QR code",
                          code="session_full", retry_after=60)

    def sweep(self) -> int:
        """Delete sessions past their expiry, with their thumbnails and answers."""
        with transaction(self.engine) as s:
            gone = track.delete_expired(s, before=datetime.now(UTC))
        return gone


def render(model: LoadedModel | None, stored: dict, lang: str | None) -> dict:
    """A stored answer (ids and scores) with display names and the best match's card in ``lang``."""
    predictions = [dict(p) for p in stored["predictions"]]
    if model is None:
        return {"prediction_id": stored["prediction_id"], "predictions": predictions, "unknown": stored["unknown"],
                "card": None}
    for p in predictions:
        p["display_name"] = answers.display_name(model, p["id"], lang)
    card = None if stored["unknown"] else answers.card_for(model, predictions[0]["id"], lang)
    return {"prediction_id": stored["prediction_id"], "predictions": predictions, "unknown": stored["unknown"],
            "card": card}


async def sweep_forever(handoff: Handoff, every_s: float = SWEEP_S) -> None:
    """Expired sessions (their thumbnails and answers) are deleted every minute."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(handoff.sweep)
        except Exception:  # the database being away must not stop the server
            log.exception("hand-off session sweep failed; retrying in %g s", every_s)
