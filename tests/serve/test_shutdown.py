"""SIGTERM with requests in flight (BAD_INPUTS.md F5), on a real `snapid serve` process: readiness
turns 503 at once, every in-flight request still gets its answer, and the process exits promptly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import free_port
from tests.serve.conftest import RED, coloured

pytestmark = pytest.mark.anyio


def multipart(photo: bytes, boundary: str = "snapidboundary") -> tuple[bytes, bytes, str]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head, photo + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def server(bundle, home, tmp_path):
    port = free_port()
    # a drain window wide enough that the readiness check below lands inside it on a loaded CI machine
    env = {**os.environ, "SNAPID_HOME": str(home.home), "SNAPID_DRAIN_S": "4.0", "SNAPID_GRACEFUL_TIMEOUT_S": "20"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "snapid", "serve", str(bundle), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"snapid serve exited with {proc.returncode} before it was ready:\n"
                        f"{(tmp_path / 'server.log').read_text()}")
        time.sleep(0.1)
    else:
        proc.kill()
        proc.wait(10)
        log.close()
        pytest.fail(f"snapid serve was not ready in 90 s:\n{(tmp_path / 'server.log').read_text()}")
    yield proc, base, tmp_path / "server.log"
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    log.close()


async def test_sigterm_lets_in_flight_requests_finish_and_readiness_turns_503(server):
    proc, base, log = server
    head, tail, content_type = multipart(coloured(RED, size=(200, 150)))

    async def slow_body():  # the upload is still arriving when SIGTERM comes
        yield head
        for i in range(0, len(tail), max(1, len(tail) // 10)):
            await asyncio.sleep(0.12)
            yield tail[i:i + max(1, len(tail) // 10)]

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        requests = [asyncio.create_task(client.post("/api/v1/predict", content=slow_body(),
                                                    headers={"content-type": content_type})) for _ in range(6)]
        await asyncio.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=base, timeout=5) as fresh:  # a new connection, as a balancer makes
            ready = await fresh.get("/healthz/ready")
            live = await fresh.get("/healthz/live")
        checked_after = time.monotonic() - signalled
        responses = await asyncio.gather(*requests)
    assert checked_after < 4.0, f"the readiness check came {checked_after:.1f} s after SIGTERM, past the drain window"
    assert ready.status_code == 503 and ready.json()["error"] == "shutting_down"
    assert live.status_code == 200
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    started = time.monotonic()
    proc.wait(30)
    assert time.monotonic() - started < 30
    assert "Finished server process" in log.read_text()
