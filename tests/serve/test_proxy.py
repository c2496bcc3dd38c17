"""Behind a reverse proxy: proxy headers are believed only from the proxies named in
--forwarded-allow-ips / SNAPID_FORWARDED_ALLOW_IPS (none by default); rate limits and the admin
"loopback only" rule then use the client address the proxy reports."""

from __future__ import annotations

import os

import httpx
import pytest

from snapid.config import Settings
from snapid.errors import UsageError
from snapid.serve.app import create_app
from tests.helpers import live_server
from tests.serve.conftest import make_bundle

pytestmark = pytest.mark.anyio
ADMIN = "/api/v1/admin/reload"
ADMIN_TOKEN = "proxy-tests-admin-token-0123"
TOKEN = {"X-Admin-Token": ADMIN_TOKEN}


def _settings(home, **kw) -> Settings:
    return Settings(home=home.home, reload_poll_s=0, admin_token=ADMIN_TOKEN, **kw)


def _client(app, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 5000)), base_url="http://127.0.0.1:8000")


async def test_without_trusted_proxies_a_forwarded_request_is_not_loopback(home, bundle):
    """A proxy on this machine that is not declared makes every client look like 127.0.0.1: a request
    carrying proxy headers is then not taken for a local one, and admin answers 403 `forwarded`."""
    app = create_app(_settings(home), bundle=bundle)
    async with app.router.lifespan_context(app), _client(app) as http:
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            value = "for=203.0.113.9" if header == "Forwarded" else "203.0.113.9"
            r = await http.post(ADMIN, headers={**TOKEN, header: value})
            assert r.status_code == 403 and r.json()["error"] == "forbidden", (header, r.text)
        assert (await http.post(ADMIN, headers=TOKEN)).status_code == 200  # really local: allowed


async def test_a_trusted_proxy_reports_the_client_and_admin_judges_that_address(home, bundle):
    app = create_app(_settings(home, forwarded_allow_ips="127.0.0.1, 10.0.0.0/8"), bundle=bundle)
    async with app.router.lifespan_context(app), _client(app) as http:
        # the client address the proxy appended (rightmost untrusted), not what the client itself claimed
        for chain in ("203.0.113.9", "127.0.0.1, 203.0.113.9", "203.0.113.9, 10.1.2.3"):
            r = await http.post(ADMIN, headers={**TOKEN, "X-Forwarded-For": chain})
            assert r.status_code == 403, (chain, r.text)
        r = await http.post(ADMIN, headers={**TOKEN, "X-Forwarded-For": "127.0.0.1"})  # an admin on the proxy host
        assert r.status_code == 200, r.text
        async with _client(app, peer="198.51.100.7") as untrusted:  # not a proxy: its headers mean nothing
            r = await untrusted.post("/api/v1/sessions", headers={"X-Forwarded-For": "127.0.0.1"})
            assert r.status_code == 201
            r = await untrusted.post(ADMIN, headers={**TOKEN, "X-Forwarded-For": "127.0.0.1"})
            assert r.status_code == 403


async def test_rate_limits_count_each_reported_client_apart(home, bundle):
    """BAD_INPUTS.md "… then 429": the hand-off limit per client address uses the address the trusted
    proxy reports, so one client reaching it does not refuse the others behind the same proxy."""
    app = create_app(_settings(home, forwarded_allow_ips="127.0.0.1", sessions_per_minute=2), bundle=bundle)
    async with app.router.lifespan_context(app), _client(app) as http:
        def post(client):
            return http.post("/api/v1/sessions", headers={"X-Forwarded-For": client})
        assert [(await post("203.0.113.1")).status_code for _ in range(3)] == [201, 201, 429]
        assert (await post("203.0.113.2")).status_code == 201
        r = await post("203.0.113.3, 203.0.113.1")  # the proxy saw .1 again, whatever the client wrote
        assert r.status_code == 429 and r.headers["retry-after"]


async def test_a_trusted_proxy_sets_the_scheme_of_the_phone_url(home, bundle):
    app = create_app(_settings(home, forwarded_allow_ips="127.0.0.1", allowed_hosts="id.example.org"), bundle=bundle)
    async with app.router.lifespan_context(app), _client(app) as http:
        r = await http.post("/api/v1/sessions", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.1",
                                                         "Host": "id.example.org"})
        assert r.status_code == 201 and r.json()["phone_url"].startswith("https://id.example.org/m/")


def test_snapid_serve_ignores_proxy_headers_unless_told(monkeypatch, tmp_path):
    """serve_forever: uvicorn's own proxy handling is off (it trusted 127.0.0.1 by default); the setting
    travels to the workers, and a value that is not an address or network is refused with its name."""
    import uvicorn

    from snapid.serve import launch

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    for name in ("SNAPID_FORWARDED_ALLOW_IPS", "SNAPID_BIND_HOST", "SNAPID_RELOAD_POLL_S", "SNAPID_BUNDLE"):
        monkeypatch.setenv(name, "")  # recorded, so what serve_forever writes into os.environ is undone
        monkeypatch.delenv(name)
    settings = Settings(home=tmp_path)
    launch.serve_forever(None, settings=settings, reload=False)
    assert calls[-1]["proxy_headers"] is False
    assert "SNAPID_FORWARDED_ALLOW_IPS" not in os.environ and os.environ["SNAPID_BIND_HOST"] == "127.0.0.1"
    launch.serve_forever(None, settings=settings, reload=False, host="0.0.0.0",
                         forwarded_allow_ips="127.0.0.1,10.0.0.0/8")
    assert calls[-1]["proxy_headers"] is False and calls[-1]["host"] == "0.0.0.0"
    assert os.environ["SNAPID_FORWARDED_ALLOW_IPS"] == "127.0.0.1,10.0.0.0/8"
    assert Settings().forwarded_allow_ips == "127.0.0.1,10.0.0.0/8" and Settings().bind_host == "0.0.0.0"
    with pytest.raises(UsageError, match="nginx-box"):
        launch.serve_forever(None, settings=settings, reload=False, forwarded_allow_ips="127.0.0.1,nginx-box")
    assert len(calls) == 2


def test_a_real_server_ignores_forwarded_for_by_default(home, tmp_path):
    """On uvicorn (as snapid serve runs it): X-Forwarded-For from an undeclared proxy changes nothing."""
    bundle = make_bundle(tmp_path / "b")
    settings = _settings(home, sessions_per_minute=1)
    with live_server(settings, bundle) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/api/v1/sessions", headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 201
        assert http.post("/api/v1/sessions", headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 429
        assert http.post(ADMIN, headers={**TOKEN, "X-Forwarded-For": "127.0.0.1"}).status_code == 403
