"""DNS rebinding: the server answers only to its own names. A page on another site whose name is made to
resolve to 127.0.0.1 sends that name as Host, and gets 400 in the JSON error shape."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.serve.app import create_app
from tests.helpers import live_server


def _get(base: str, host: str, path: str = "/healthz/live") -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10) as http:
        return http.get(path, headers={"Host": host})


def test_a_foreign_host_name_gets_400_and_the_servers_own_names_answer(home, bundle):
    """BAD_INPUTS.md rule for every rejection (JSON body, the server stays healthy): Host names that are
    not this server's get 400 `bad_host`; localhost, loopback addresses, the address it listens on, the
    public URL's host and SNAPID_ALLOWED_HOSTS answer. Real uvicorn server on 127.0.0.1."""
    settings = Settings(home=home.home, reload_poll_s=0, allowed_hosts="id.example.org, Other.Example.",
                        public_url="https://snapid.example.net:8443", bind_host="127.0.0.1")
    with live_server(settings, bundle) as base:
        port = base.rsplit(":", 1)[1]
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}", "192.0.2.7", f"[2001:db8::1]:{port}",
                     "localhost.attacker.example", "127.0.0.1.nip.io", "id.example.org.evil", "a b", "x:y:z"):
            r = _get(base, host)
            assert r.status_code == 400, (host, r.status_code)
            assert r.json()["error"] == "bad_host" and set(r.json()) == {"error", "message"}, host
            assert r.headers["content-security-policy"]  # the usual headers on a refusal too
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}",
                     "id.example.org", f"other.example:{port}", "snapid.example.net:8443"):
            assert _get(base, host).status_code == 200, host
        assert _get(base, "rebind.attacker.example", "/api/v1/model").status_code == 400  # every route
        assert _get(base, f"127.0.0.1:{port}", "/healthz/ready").status_code == 200


def test_a_star_turns_the_check_off(home, bundle):
    settings = Settings(home=home.home, reload_poll_s=0, allowed_hosts="*")
    with live_server(settings, bundle) as base:
        assert _get(base, "anything.example").status_code == 200


def test_testserver_is_not_allowed_unless_configured(home, bundle):
    """The tests allow TestClient's "testserver" through SNAPID_ALLOWED_HOSTS (tests/conftest.py); a
    server without it refuses that name like any other."""
    with TestClient(create_app(Settings(home=home.home, reload_poll_s=0, allowed_hosts=""), bundle=bundle)) as client:
        r = client.get("/healthz/live")
        assert r.status_code == 400 and r.json()["error"] == "bad_host"


@pytest.mark.anyio
async def test_a_server_on_every_interface_answers_the_address_a_phone_dialled(home, bundle):
    """Bound to 0.0.0.0, the QR hand-off sends a phone to the LAN address (http://192.168.x.y:8000): the
    address a connection arrived on is always one of the server's names, any other name is not. In-process
    (the ASGI scope's "server" is the local address of the connection, as uvicorn sets it per connection)."""
    settings = Settings(home=home.home, reload_poll_s=0, allowed_hosts="", bind_host="0.0.0.0")
    app = create_app(settings, bundle=bundle)
    async with app.router.lifespan_context(app):
        lan = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://192.168.1.20:8000")
        async with lan:
            made = await lan.post("/api/v1/sessions")
            assert made.status_code == 201, made.text
            phone_url = made.json()["phone_url"]
            assert phone_url.startswith("http://192.168.1.20:8000/m/")
            assert (await lan.get(phone_url)).status_code == 200  # the phone's request
            r = await lan.get("/healthz/live", headers={"Host": "rebind.attacker.example:8000"})
            assert r.status_code == 400 and r.json()["error"] == "bad_host"
            r = await lan.get("/healthz/live", headers={"Host": "192.168.1.21:8000"})  # not this connection's
            assert r.status_code == 400


def test_the_detected_lan_address_is_allowed_when_listening_everywhere(monkeypatch):
    """The LAN address the QR code shows for a loopback desktop is a name of a server bound to 0.0.0.0,
    even when checked by a request that arrived on another interface."""
    from snapid.serve import middleware
    from snapid.serve.services import phone_link

    monkeypatch.setattr(phone_link, "lan_address", lambda: "192.168.7.7")
    names = middleware.host_names(allowed="", bind_host="0.0.0.0", public_url="")
    assert "192.168.7.7" in names
    names = middleware.host_names(allowed="", bind_host="127.0.0.1", public_url="")
    assert "192.168.7.7" not in names and "127.0.0.1" in names
