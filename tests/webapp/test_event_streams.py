"""The hand-off event streams on a real server: Last-Event-ID is validated like every other number, and
open streams are capped per session, per client address and per worker, leaving connections for
health checks and predictions."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx
import pytest

from snapid.config import Settings
from tests.helpers import live_server
from tests.serve.conftest import RED, coloured, files


def _settings(home, **kw) -> Settings:
    return Settings(home=home.home, reload_poll_s=0, sessions_per_minute=1000, **kw)


def _open_session(http: httpx.Client) -> dict:
    r = http.post("/api/v1/sessions")
    assert r.status_code == 201, r.text
    return r.json()


def _events(stack: ExitStack, http: httpx.Client, made: dict, headers: dict | None = None) -> httpx.Response:
    """Open an event stream and keep it open (until ``stack`` closes); the status line is all we read."""
    return stack.enter_context(http.stream("GET", f"/api/v1/sessions/{made['session_id']}/events",
                                           params={"key": made["desktop_key"]}, headers=headers or {}))


@pytest.mark.parametrize("value", [b"\xb2", b"\xb9", b"-1", b"1_0", b"+7", b"1e3", b"9" * 19, b"0x10"])
def test_a_malformed_last_event_id_gets_422_in_json(home, kbundle, value):
    """A malformed header is refused like a malformed number parameter (BAD_INPUTS.md: every rejection in
    the JSON shape; "Unknown route or method … never 500"): 422 `invalid_request` naming the header.
    b"\\xb2" is '²' in Latin-1, which str.isdigit() accepts and int() refuses: a 500 before."""
    with live_server(_settings(home), kbundle) as base, httpx.Client(base_url=base, timeout=10) as http:
        made = _open_session(http)
        with ExitStack() as stack:
            r = _events(stack, http, made, {"Last-Event-ID": value})
            r.read()
        assert r.status_code == 422, (value, r.status_code)
        assert r.json()["error"] == "invalid_request" and "last-event-id" in r.json()["message"].lower()
        ok = http.get(f"/api/v1/sessions/{made['session_id']}/results",
                      params={"after": "\u00b2"}, headers={"X-Snapid-Key": made["desktop_key"]})
        assert ok.status_code == 422 and ok.json()["error"] == "invalid_request"  # the same rule for after=


def test_streams_are_capped_per_session_client_and_worker_and_health_and_predict_still_answer(home, kbundle):
    """BAD_INPUTS.md L2 ("excess requests get 503/429 with Retry-After … /health/live keeps answering")
    for event streams: the 4th stream of one session, the 5th of one address and the 7th of the worker
    get 429 `too_many_streams` in JSON with Retry-After; readiness and predict answer meanwhile; a closed
    stream frees its place."""
    settings = _settings(home, streams_per_session=3, streams_per_client=4, max_streams=6)
    with live_server(settings, kbundle) as base, ExitStack() as stack:
        http = stack.enter_context(httpx.Client(base_url=base, timeout=10))
        other = stack.enter_context(httpx.Client(base_url=base, timeout=10,  # a second client address
                                                 transport=httpx.HTTPTransport(local_address="127.0.0.2")))
        a, b, c = (_open_session(http) for _ in range(3))
        streams = ExitStack()
        stack.enter_context(streams)
        assert [_events(streams, http, a).status_code for _ in range(3)] == [200] * 3
        refused = []
        with ExitStack() as extra:
            refused.append(_events(extra, http, a))  # a 4th stream of session a
            assert _events(extra, http, b).status_code == 200  # the 4th of this address
            refused.append(_events(extra, http, b))  # a 5th of this address
            assert [_events(extra, other, c).status_code for _ in range(2)] == [200, 200]  # 6 in all
            refused.append(_events(extra, other, c))  # a 7th of the worker
            for r in refused:
                r.read()
                assert r.status_code == 429, r.text
                assert r.json()["error"] == "too_many_streams" and int(r.headers["retry-after"]) >= 1
            assert http.get("/healthz/ready").status_code == 200
            assert http.post("/api/v1/predict", files=files(coloured(RED))).status_code == 200
        # the streams of `extra` are closed: their places are free again (once the server sees them go)
        deadline = time.monotonic() + 5
        while (r := _events(streams, other, c)).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.status_code == 200


def test_the_connection_limit_leaves_a_reserve_beside_streams_and_queued_predictions():
    """uvicorn's limit_concurrency (a plain-text 503 for everyone once reached) stays well above what
    streams and admitted predictions can hold together, so health checks and predictions get through."""
    from snapid.serve.launch import connection_limit

    for queue_size, max_streams in [(64, 64), (8, 64), (64, 500), (1, 1)]:
        limit = connection_limit(queue_size=queue_size, max_streams=max_streams)
        assert limit >= 2 * (queue_size + max_streams) and limit >= 128
    assert Settings().max_streams + Settings().queue_size <= connection_limit(
        queue_size=Settings().queue_size, max_streams=Settings().max_streams) // 2
