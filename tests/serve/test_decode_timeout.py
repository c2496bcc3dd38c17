"""The decode time bound through the API: a crafted photo that would keep a decode thread busy for
seconds is stopped at SNAPID_DECODE_TIMEOUT_S and answered 422 decode_timeout; the server stays healthy.
Rows cited are from ../shared/BAD_INPUTS.md."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.serve.app import create_app
from tests.crafted import many_scan_jpeg
from tests.serve.conftest import RED, coloured, files


def test_a_photo_that_takes_too_long_to_decode_gets_422_and_the_server_stays_healthy(home, bundle):
    """Load tests' configuration: "decode timeout 5 s" (0.5 s here). Every rejection: a JSON body
    {"error", "message"}, /health/ready 200 afterwards. The crafted JPEG (3000 empty progressive scans
    over a 36 MP picture) costs about 10 s of CPU unbounded; here both photos of one request hit the
    bound on the two decode threads, and the next request is answered as usual."""
    settings = Settings(home=home.home, reload_poll_s=0, decode_timeout_s=0.5, decode_threads=2)
    with TestClient(create_app(settings, bundle=bundle), raise_server_exceptions=False) as client:
        crafted = many_scan_jpeg()
        started = time.perf_counter()
        r = client.post("/api/v1/predict", files=files(crafted, crafted, name="scans.jpg"))
        took = time.perf_counter() - started
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "decode_timeout" and "0.5 s" in r.json()["message"]
        assert took < 4.0, f"answered after {took:.1f} s"
        assert client.get("/health/ready").status_code == 200
        ok = client.post("/api/v1/predict", files=files(coloured(RED)))
        assert ok.status_code == 200 and ok.json()["predictions"][0]["id"] == "red"
