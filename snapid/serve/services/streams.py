"""Bounds on open event streams (server-sent events of the QR hand-off).

A stream holds its connection for up to a minute, and uvicorn answers every request with a plain-text
503 once ``limit_concurrency`` connections are open. So each worker admits at most ``per_session``
streams per hand-off session, ``per_client`` per client address and ``total`` in all; more get 429
``too_many_streams`` with Retry-After, and the rest of the connection limit stays free for health checks
and predictions (snapid.serve.launch.connection_limit keeps the limit well above ``total``). A place is
taken when the stream is answered and given back when its response ends, however it ends
(routes/handoff.py's HeldStream)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from snapid.serve.services.handoff import TooMany

RETRY_AFTER_S = 5


class StreamSlots:
    """Counts of the open streams of one worker. Used from the event loop only, so no lock."""

    def __init__(self, *, per_session: int, per_client: int, total: int):
        self.per_session, self.per_client, self.total = max(1, per_session), max(1, per_client), max(1, total)
        self.sessions: Counter[str] = Counter()
        self.clients: Counter[str] = Counter()
        self.open = 0

    def take(self, *, session_id: str, client: str) -> Callable[[], None]:
        """A place for one more stream, or 429; returns the function that gives it back (once)."""
        if self.sessions[session_id] >= self.per_session:
            raise _too_many(f"this hand-off session already has {self.per_session} open event streams; "
                            "close another page showing it")
        if self.clients[client] >= self.per_client:
            raise _too_many(f"this address already has {self.per_client} open event streams")
        if self.open >= self.total:
            raise _too_many("the server has as many open event streams as it takes; poll /results meanwhile")
        self.sessions[session_id] += 1
        self.clients[client] += 1
        self.open += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if given_back:
                return
            given_back = True
            self.open -= 1
            for counts, key in ((self.sessions, session_id), (self.clients, client)):
                counts[key] -= 1
                if counts[key] <= 0:
                    del counts[key]  # the counters hold only keys with open streams
        return give_back


def _too_many(message: str) -> TooMany:
    return TooMany(message, code="too_many_streams", retry_after=RETRY_AFTER_S)
