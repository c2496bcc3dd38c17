"""Pure-ASGI middleware: security headers on every response and request metrics; the Host names the
server answers to (DNS rebinding); the client address a trusted reverse proxy reports.

Pure ASGI rather than BaseHTTPMiddleware: no extra task per request and streaming stays intact."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapid.errors import UsageError
from snapid.serve.services import phone_link
from snapid.serve.services.metrics import Metrics

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_NAMES = {name for name, _ in SECURITY_HEADERS}


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def tile_origin(url: str) -> str | None:
    """The scheme://host[:port] of a map tile URL template: the one image source the page's CSP adds."""
    if not url:
        return None
    parts = urlsplit(url.replace("{", "").replace("}", ""))
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"[\s;,']", url):
        raise UsageError(f"SNAPID_TILE_URL={url!r} is not an http(s) URL template like "
                         "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    return f"{parts.scheme}://{parts.netloc}"


class SecurityHeadersAndMetrics:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, img_origins: tuple[str, ...] = ()):
        self.app, self.metrics = app, metrics
        self.headers = SECURITY_HEADERS
        if img_origins:  # the map's tile server, and nothing else, besides the server itself
            extra = " ".join(img_origins).encode()
            self.headers = [(k, v.replace(b"img-src 'self' data: blob:", b"img-src 'self' data: blob: " + extra)
                             if k == b"content-security-policy" else v) for k, v in SECURITY_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message = {**message, "headers": headers + self.headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"  # bounded label values
            method = scope.get("method", "")
            method = method if method in KNOWN_METHODS else "OTHER"  # a client must not grow the series
            self.metrics.observe_request(method, template, status["code"], time.perf_counter() - start)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- Host names (DNS rebinding) -----------------------------------------------------------------------
_PORT = re.compile(r"[0-9]{1,5}")
_WILDCARD_BINDS = {"", "0.0.0.0", "::", "[::]"}


def _name(value: str) -> str:
    """A host name or address as compared: lower case, no brackets, no trailing dot."""
    value = value.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return value.rstrip(".")


def host_of(header: str) -> str | None:
    """The host of a Host header value, without its port; None when the value is malformed."""
    header = header.strip()
    if header.startswith("["):  # an IPv6 address
        end = header.find("]")
        if end < 0:
            return None
        host, rest = header[1:end], header[end + 1:]
        if (rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:]))) or _ip(host) is None:
            return None
        return _name(host)
    host, colon, port = header.partition(":")
    if (colon and not _PORT.fullmatch(port)) or not host or not re.fullmatch(r"[A-Za-z0-9._-]{1,253}", host):
        return None
    return _name(host)


def _ip(value: str):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def host_names(*, allowed: str, bind_host: str, public_url: str) -> set[str]:
    """The names this server answers to besides loopback addresses and the address a connection arrived
    on: SNAPID_ALLOWED_HOSTS (``*`` among them turns the check off), the address it listens on, the public
    URL's host, and, listening on every interface, the LAN address the QR hand-off gives phones."""
    names = {_name(n) for n in allowed.split(",") if n.strip()} | {"localhost"}
    if _name(bind_host) not in {_name(b) for b in _WILDCARD_BINDS}:
        names.add(_name(bind_host))
    else:
        names.add(phone_link.lan_address())
    if public_url:
        names.add(_name(urlsplit(public_url).hostname or ""))
    return names - {""}


class AllowedHosts:
    """400 ``bad_host`` for a request whose Host is not a name of this server. A page on another site can
    make its own name resolve to 127.0.0.1 (DNS rebinding) and so reach a server on the visitor's machine,
    but its requests then carry that name. IP addresses pass when they are loopback, or the address the
    connection arrived on (so http://192.168.x.y:8000 works on a server listening on 0.0.0.0). A request
    with no Host (HTTP/1.0 health checkers) passes: a browser always sends one."""

    def __init__(self, app: ASGIApp, *, names: set[str]):
        self.app, self.names, self.off = app, names, "*" in names
        self.addresses = {ip for ip in map(_ip, names) if ip is not None}

    def allowed(self, host: str, scope: Scope) -> bool:
        if host in self.names:
            return True
        ip = _ip(host)
        if ip is None:
            return False
        server = scope.get("server") or (None, None)
        local = _ip(str(server[0]))
        local = getattr(local, "ipv4_mapped", None) or local  # a dual-stack socket: ::ffff:192.168.1.20
        return ip.is_loopback or ip in self.addresses or ip == local

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.off:
            raw = next((v for k, v in scope.get("headers", []) if k == b"host"), b"")
            header = raw.decode("latin-1")
            host = host_of(header) if header.strip() else ""
            if host is None or (host and not self.allowed(host, scope)):
                shown = header[:100].encode("ascii", "backslashreplace").decode()
                await _refuse(send, 400, "bad_host",
                              f"Host {shown!r} is not a name of this server; add it to SNAPID_ALLOWED_HOSTS if it is")
                return
        await self.app(scope, receive, send)


# --- the client behind a trusted reverse proxy -----------------------------------------------------
FORWARDED = "snapid.forwarded_client"  # scope key: the client address came from a trusted proxy's header
PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def trusted_proxies(value: str) -> list | None:
    """SNAPID_FORWARDED_ALLOW_IPS parsed: networks, or None for ``*`` (any sender). A name that is not an
    address or a network is refused: it would silently trust nothing."""
    if value.strip() == "*":
        return None
    networks = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise UsageError(f"forwarded-allow-ips: {item!r} is not an IP address or network (e.g. 127.0.0.1, "
                             "10.0.0.0/8)") from None
    return networks


def _forwarded_address(entry: str):
    """An X-Forwarded-For entry as an address: ``1.2.3.4``, ``1.2.3.4:5``, ``::1`` or ``[::1]:5``."""
    entry = entry.strip()
    if entry.startswith("[") and "]" in entry:
        entry = entry[1:entry.index("]")]
    elif entry.count(":") == 1:
        entry = entry.split(":")[0]
    return _ip(entry)


class ForwardedClient:
    """For a request from a trusted proxy: the client is the address the proxy reports in X-Forwarded-For
    (the rightmost one that is not itself a trusted proxy: what a client writes there itself is further
    left), and the scheme is X-Forwarded-Proto. Added only when proxies are configured; from any other
    sender these headers change nothing."""

    def __init__(self, app: ASGIApp, *, trusted: str):
        self.app, self.networks = app, trusted_proxies(trusted)

    def trusts(self, address) -> bool:
        return self.networks is None or (address is not None and any(address in n for n in self.networks))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] == "http" and peer and self.trusts(_ip(str(peer[0]))):
            headers = scope.get("headers", [])
            chain = [e for k, v in headers if k == b"x-forwarded-for" for e in v.decode("latin-1").split(",")]
            addresses = [_forwarded_address(e) for e in chain]
            if chain and None not in addresses:
                client = next((a for a in reversed(addresses) if not self.trusts(a)), addresses[0])
                scope["client"] = (str(client), 0)
                scope[FORWARDED] = True
            proto = next((v.decode("latin-1").strip().lower() for k, v in headers if k == b"x-forwarded-proto"), "")
            if proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)


def is_local_client(scope: Scope) -> bool:
    """The client is this machine: a loopback address that a trusted proxy reported, or a loopback peer
    carrying no proxy header. A loopback peer that does carry one is a proxy on this machine speaking
    for someone else (not declared in SNAPID_FORWARDED_ALLOW_IPS, or not saying whom): not local."""
    client = scope.get("client")
    ip = _ip(str(client[0])) if client else None
    if ip is None or not ip.is_loopback:
        return False
    return bool(scope.get(FORWARDED)) or not any(k in PROXY_HEADERS for k, _ in scope.get("headers", []))
