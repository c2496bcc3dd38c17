"""The desktop's live view of a hand-off session: server-sent events, one ``upload`` event per photo as
it arrives (id = its position), ``expired`` when the session ends. One stream lasts at most a minute;
EventSource reconnects with Last-Event-ID. Uploads received by other worker processes are seen by
looking at the database every ``POLL_S``; those of this process wake the stream at once (`Hub`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

from anyio import to_thread
from sqlalchemy.exc import OperationalError

from snapid.serve.services.handoff import Handoff
from snapid.serve.services.predictor import Predictor
from snapid.track.db import is_busy

STREAM_MAX_S = 60.0     # one event stream lasts at most this long; EventSource reconnects with Last-Event-ID
POLL_S = 1.0            # how often a stream looks at the database (uploads received by other workers)
KEEPALIVE_S = 15.0


async def events(handoff: Handoff, predictor: Predictor, row: dict, *, after: int, lang: str | None,
                 draining: Callable[[], bool]) -> AsyncIterator[str]:
    """The event stream of session ``row`` from position ``after``, until it expires, a minute has
    passed or the server is shutting down (``draining``). Answers use the model served at each moment."""
    deadline, quiet_since = time.monotonic() + STREAM_MAX_S, time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() < deadline and not draining():
        try:
            page = await to_thread.run_sync(partial(handoff.results, row, model=predictor.model, after=after,
                                                    lang=lang))
        except OperationalError as exc:
            if not is_busy(exc):
                raise
            await handoff.hub.wait(row["id"], POLL_S)  # the database is locked for now: look again shortly
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
        await handoff.hub.wait(row["id"], POLL_S)


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
