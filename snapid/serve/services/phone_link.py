"""Where a phone reaches this server: the base URL of the hand-off's phone link, and its QR code."""

from __future__ import annotations

import io
import ipaddress
import socket

PROBE_ADDRESS = ("10.255.255.255", 1)  # never routed; a UDP connect sends nothing, it only picks the interface


def lan_address() -> str:
    """The address of the interface that would reach another network; 127.0.0.1 when there is none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(PROBE_ADDRESS)
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def phone_base(*, public_url: str, request_host: str, request_port: int | None, scheme: str) -> tuple[str, str]:
    """(base URL phones should use, a note for the user or ""). Order: the configured public URL; the
    address the desktop itself used when it is not loopback; else the detected LAN address."""
    if public_url:
        return public_url.rstrip("/"), ""
    port = f":{request_port}" if request_port else ""
    if not _is_loopback(request_host):
        host = f"[{request_host}]" if ":" in request_host else request_host
        return f"{scheme}://{host}{port}", ""
    address = lan_address()
    if address == "127.0.0.1":
        return (f"{scheme}://127.0.0.1{port}",
                "no network address found: set --public-url so a phone can reach this server")
    return (f"{scheme}://{address}{port}",
            "a phone reaches this address only if the server listens on it (snapid serve --host 0.0.0.0) "
            "and both are on the same network")


def qr_svg(url: str) -> str:
    import segno  # only when a QR code is asked for

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False,
                                    title="QR code for the phone upload page")
    return buffer.getvalue().decode()
