"""BAD_INPUTS "Slowloris: headers at 1 byte per 10 s": the connection is closed by the header
timeout, while normal and keep-alive clients are served."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from snapid.serve.protocol import HeaderTimeoutH11Protocol
from tests.helpers import free_port


class QuickTimeout(HeaderTimeoutH11Protocol):
    header_timeout_s = 0.5


@pytest.fixture
def server():
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=QuickTimeout, log_level="warning",
                                        timeout_keep_alive=5))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(10)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (what is left of an earlier
    response may still arrive first: it is read and ignored)."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(1024) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def test_slowloris_headers_are_cut_off_by_the_header_timeout(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        assert closed_within(sock, 5.0)  # 0.5 s timeout; generous for a loaded CI machine


def test_a_silent_connection_is_closed_too(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        assert closed_within(sock, 5.0)


def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_off(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert b"200 OK" in sock.recv(4096)
        sock.sendall(b"GET /ping HTTP/1.1\r\n")
        assert closed_within(sock, 5.0)


def test_normal_clients_are_served_across_the_timeout(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server}") as client:
        for _ in range(3):
            assert client.get("/ping").json() == {"ok": True}
            time.sleep(0.3)  # keep-alive pauses longer in total than the header timeout
