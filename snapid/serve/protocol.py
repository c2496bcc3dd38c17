"""uvicorn's h11 protocol with a deadline on request headers.

uvicorn's h11 protocol times only idle keep-alive connections: a client that sends a request line
and then one header byte every few seconds (slowloris) holds a connection, and enough of them fill
`limit_concurrency`. Here every request's headers must be complete within ``HEADER_TIMEOUT_S`` of
its first byte (or of the connection opening, or of the previous response), else the connection is
closed. The body has its own
deadline (`BodyLimitMiddleware`)."""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


class HeaderTimeoutH11Protocol(H11Protocol):
    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = None
        self._arm()

    def _arm(self) -> None:
        self._cancel()
        self._waiting_for = self.cycle  # a new cycle object appears when the headers are complete
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _cancel(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.cycle is self._waiting_for and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self._header_timer is None:
            self._arm()
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._waiting_for:
            self._cancel()

    def on_response_complete(self) -> None:
        # the next request may already have begun arriving while this response was being sent
        # (data_received saw a busy connection then): its headers are timed from here
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)
