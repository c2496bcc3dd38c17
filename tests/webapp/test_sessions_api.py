"""QR hand-off sessions through the API (BAD_INPUTS.md rows: expired / forged / another session's /
reused token, 20 parallel uploads to one session), the SSE stream and the polling fallback."""

from __future__ import annotations

import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from snapid.config import Settings
from snapid.serve.app import create_app
from snapid.serve.services import handoff_tokens as tokens
from snapid.serve.services import phone_link, redact
from snapid.track.db import get_engine, transaction
from snapid.track.tables import HandoffSessionRow, HandoffUploadRow
from tests.helpers import live_server
from tests.serve.conftest import GREEN, RED, coloured, files
from tests.webapp.conftest import RULE_MESSAGE


def _settings(home, **kw) -> Settings:
    return Settings(home=home.home, reload_poll_s=0, **kw)


@pytest.fixture
def make_client(home, kbundle):
    opened = []

    def make(**kw):
        client = TestClient(create_app(_settings(home, **kw), bundle=kbundle), raise_server_exceptions=False)
        opened.append(client.__enter__())
        return client
    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def open_session(client, **params) -> dict:
    response = client.post("/api/v1/sessions", params=params)
    assert response.status_code == 201, response.text
    made = response.json()
    made["token"] = made["phone_url"].rsplit("/m/", 1)[1]
    return made


def upload(client, session: dict, photo: bytes = None, *, token: str | None = None, header: bool = True):
    token = session["token"] if token is None else token
    kw = {"headers": {"X-Snapid-Token": token}} if header else {"params": {"token": token}}
    return client.post(f"/api/v1/sessions/{session['session_id']}/upload", files=files(photo or coloured(RED)), **kw)


def results(client, session: dict, after: int = 0, **params):
    return client.get(f"/api/v1/sessions/{session['session_id']}/results", params={"after": after, **params},
                      headers={"X-Snapid-Key": session["desktop_key"]})


def test_a_session_gives_a_phone_url_a_qr_code_and_a_private_secret(client, home):
    made = open_session(client, lang="ko")
    assert made["phone_url"].startswith("http://testserver/m/") and made["max_uploads"] == 10
    assert made["qr_svg"].lstrip().startswith("<svg") and "<script" not in made["qr_svg"]
    assert 590 < made["expires_in_s"] <= 600 and made["single_use"] is False
    secret = home.home / "session_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600 and len(secret.read_text()) >= 32
    qr = client.get(f"/api/v1/sessions/{made['session_id']}/qr.svg", params={"key": made["desktop_key"]})
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/m/" + made["token"]).status_code == 200


def test_the_configured_public_url_is_used_for_the_phone(make_client):
    made = open_session(make_client(public_url="https://snap.example.lan:8443/"))
    assert made["phone_url"].startswith("https://snap.example.lan:8443/m/") and made["note"] == ""


def test_loopback_desktops_get_the_lan_address_and_a_note():
    base, note = phone_link.phone_base(public_url="", request_host="127.0.0.1", request_port=8000, scheme="http")
    assert base.endswith(":8000") and note
    assert phone_link.phone_base(public_url="", request_host="192.168.1.7", request_port=8000, scheme="http") == \
        ("http://192.168.1.7:8000", "")


def test_phone_upload_reaches_the_desktop_with_thumbnail_card_and_warnings(client):
    made = open_session(client, lang="en")
    first = upload(client, made, coloured(RED))
    assert first.status_code == 200, first.text
    assert first.json()["position"] == 1 and first.json()["remaining"] == 9 and first.json()["warnings"] == []
    assert first.json()["card"]["display_name"] == "Red pill"
    second = upload(client, made, coloured(GREEN), header=False)  # the token may come as ?token= too
    assert second.status_code == 200 and second.json()["warnings"][0]["message"] == RULE_MESSAGE["en"]
    page = results(client, made, lang="ko").json()
    assert [u["position"] for u in page["uploads"]] == [1, 2] and page["received"] == 2
    assert page["uploads"][0]["thumbnail"].startswith("data:image/jpeg;base64,")
    assert page["uploads"][0]["card"]["display_name"] == "빨간 알약"  # rendered in the language asked now
    assert page["warnings"][0]["message"] == RULE_MESSAGE["ko"] and page["warnings"][0]["objects"] == [1, 2]
    assert [u["position"] for u in results(client, made, after=1).json()["uploads"]] == [2]


def test_desktop_reads_need_the_desktop_key(client):
    made = open_session(client)
    sid = made["session_id"]
    assert client.get(f"/api/v1/sessions/{sid}/results").status_code == 401
    assert client.get(f"/api/v1/sessions/{sid}/results",
                      headers={"X-Snapid-Key": "x" * 43}).json()["error"] == "unauthorized"
    assert client.get(f"/api/v1/sessions/{sid}/events", params={"key": "wrong"}).status_code == 401
    assert client.get(f"/api/v1/sessions/{'0' * 32}/results", headers={"X-Snapid-Key": "k"}).status_code == 404
    assert client.get("/api/v1/sessions/not-an-id/results").status_code == 422


def test_forged_tokens_get_401(client):
    made = open_session(client)
    token = made["token"]
    assert upload(client, made, token="").status_code == 401
    assert upload(client, made, token="garbage").json()["error"] == "bad_token"
    later = token.split(".")
    later[1] = str(int(later[1]) + 3600)  # a longer expiry without the secret
    assert upload(client, made, token=".".join(later)).status_code == 401
    for position in (0, 40, 45, len(token) - 1):  # session id, expiry, nonce, signature
        flipped = token[:position] + ("1" if token[position] != "1" else "2") + token[position + 1:]
        assert upload(client, made, token=flipped).status_code == 401, position
    assert results(client, made).json()["received"] == 0


def test_flipping_any_character_of_a_token_is_refused():
    secret = b"s" * 32
    token = tokens.sign_token(secret, session_id="a" * 32, expires=int(time.time()) + 60, nonce="b" * 32)
    assert tokens.verify_token(secret, token, session_id="a" * 32, now=time.time()).session_id == "a" * 32
    for position, char in enumerate(token):
        for other in {"0", "A", "_"} - {char}:
            changed = token[:position] + other + token[position + 1:]
            with pytest.raises(tokens.HandoffError) as err:
                tokens.verify_token(secret, changed, session_id="a" * 32, now=time.time())
            assert err.value.status in (401, 403), (position, other)
    with pytest.raises(tokens.HandoffError) as err:
        tokens.verify_token(b"another secret of 32 bytes......", token, session_id="a" * 32, now=time.time())
    assert err.value.status == 401


def test_a_token_of_another_session_gets_403(client):
    one, two = open_session(client), open_session(client)
    response = upload(client, two, token=one["token"])
    assert response.status_code == 403 and response.json()["error"] == "wrong_session"


def test_an_expired_token_gets_410_and_the_session_is_swept(make_client, home):
    client = make_client(session_ttl_s=1)
    made = open_session(client)
    time.sleep(1.3)
    response = upload(client, made)
    assert response.status_code == 410 and response.json()["error"] == "session_expired"
    assert results(client, made).json()["expired"] is True
    open_session(client)  # opening a session sweeps the expired ones
    assert results(client, made).status_code == 404
    assert upload(client, made).status_code == 410  # still 410: the signature proves it existed


def test_a_single_use_token_gets_409_the_second_time(client):
    made = open_session(client, single="true")
    assert made["single_use"] is True and made["max_uploads"] == 1
    assert upload(client, made).status_code == 200
    again = upload(client, made)
    assert again.status_code == 409 and again.json()["error"] == "token_used"


def test_the_cap_answers_429_and_a_bad_photo_takes_no_slot(make_client):
    client = make_client(session_max_uploads=2)
    made = open_session(client)
    bad = upload(client, made, b"<html>not a photo</html>")
    assert bad.status_code == 415
    assert upload(client, made).status_code == 200 and upload(client, made).status_code == 200
    full = upload(client, made)
    assert full.status_code == 429 and full.json()["error"] == "session_full" and full.headers["retry-after"]
    assert results(client, made).json()["received"] == 2


def test_too_many_sessions_from_one_address_get_429(make_client):
    client = make_client(sessions_per_minute=2)
    open_session(client), open_session(client)
    response = client.post("/api/v1/sessions")
    assert response.status_code == 429 and response.json()["error"] == "too_many_sessions"


def test_tokens_and_keys_are_redacted_from_the_access_log():
    line = redact.redact('GET /m/abc.123.def.sig HTTP/1.1 /api/v1/sessions/x/events?key=SECRET&lang=ko&token=T0K')
    assert "abc.123" not in line and "SECRET" not in line and "T0K" not in line and "lang=ko" in line
    import logging
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/m/abc.def?token=zzz", "1.1", 200), None)
    redact.REDACT.filter(record)
    assert "abc.def" not in record.getMessage() and "zzz" not in record.getMessage()


def test_twenty_parallel_uploads_store_exactly_the_cap(home, kbundle):
    """BAD_INPUTS: 20 parallel uploads to one session → all stored up to the cap, then 429; no lost or
    duplicate rows, no 500 "database is locked". Real uvicorn server, 20 client threads."""
    settings = _settings(home, session_max_uploads=10)
    with live_server(settings, kbundle) as base, httpx.Client(base_url=base, timeout=60) as http:
        made = open_session(http)
        photo = coloured(RED, size=(400, 300))
        barrier = threading.Barrier(20)

        def send(_):
            barrier.wait()
            return upload(http, made, photo)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(send, range(20)))
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 10 + [429] * 10, [r.text for r in answers if r.status_code not in (200, 429)]
        assert sorted(r.json()["position"] for r in answers if r.status_code == 200) == list(range(1, 11))
        page = results(http, made).json()
        assert [u["position"] for u in page["uploads"]] == list(range(1, 11)) and page["received"] == 10
    with transaction(get_engine(settings.resolved_db_url())) as s:
        rows = s.scalar(select(func.count()).select_from(HandoffUploadRow)
                        .where(HandoffUploadRow.session_id == made["session_id"]))
        counter = s.get(HandoffSessionRow, made["session_id"]).n_uploads
    assert rows == counter == 10


def test_events_stream_delivers_an_upload_as_it_arrives(home, kbundle):
    with live_server(_settings(home), kbundle) as base, httpx.Client(base_url=base, timeout=30) as http:
        made = open_session(http, lang="en")
        url = f"/api/v1/sessions/{made['session_id']}/events"
        with http.stream("GET", url, params={"key": made["desktop_key"]}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            threading.Timer(0.3, lambda: upload(http, made, coloured(GREEN))).start()
            started, lines = time.monotonic(), []
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("data:") and "uploads" in line:
                    break
                assert time.monotonic() - started < 15, lines
        assert "event: upload" in lines and "id: 1" in lines
        assert '"display_name":"Green pill"' in lines[-1]
        upload(http, made, coloured(RED))
        with http.stream("GET", url, params={"key": made["desktop_key"]}, headers={"Last-Event-ID": "1"}) as again:
            first = next(line for line in again.iter_lines() if line.startswith("id:"))
        assert first == "id: 2"  # a reconnecting EventSource resumes after the last event it saw


SESSION_OPERATIONS = [("POST", "/api/v1/sessions"), ("GET", "/api/v1/sessions/{session_id}/results"),
                      ("GET", "/api/v1/sessions/{session_id}/qr.svg"), ("POST", "/api/v1/sessions/{session_id}/upload")]


@pytest.mark.parametrize("method, path", SESSION_OPERATIONS)
def test_session_routes_conform_to_their_schema(tmp_path, method, path):
    """API fuzz (as tests/serve/test_schema.py): generated requests, valid and invalid; no 5xx but 503,
    every answer matching its documented status and schema."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    from tests.webapp.conftest import knowledge_bundle

    app = create_app(Settings(home=tmp_path / "home", reload_poll_s=0, sessions_per_minute=1000),
                     bundle=knowledge_bundle(tmp_path / "bundle"))
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]

    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        # generated ids, tokens and keys are never valid, so a correct server refuses "positive" data here
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500 or response.status_code == 503

    check()
