"""QR phone hand-off: a desktop page opens a session, a phone sends photos to it, the desktop sees them.

Two secrets per session, never stored in clear and never logged:
- the **phone token**, in the QR code: ``<session id>.<expiry>.<nonce>.<HMAC-SHA256>`` signed with the
  server secret. It allows up to ``max_uploads`` photos until it expires; a session opened with
  ``single=true`` makes it single-use (one photo, then 409). Checks, in order: a malformed token or a bad
  HMAC → 401; a valid token of another session → 403; past its expiry (or its session swept) → 410
  ``session_expired``; a single-use token already used → 409; the cap reached → 429.
- the **desktop key**, returned once at creation; only its sha256 is kept. It reads the session's events
  and results (header ``X-Snapid-Key``, or ``?key=`` for EventSource, which cannot set headers).
Both are compared with ``hmac.compare_digest``; the access log filter below redacts them from URLs.

Photos are never kept: a session stores each photo's thumbnail (a small JPEG in the database) and the
answer, and everything is deleted once the session has expired.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import ipaddress
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from snapid import images
from snapid.errors import SnapidError

log = logging.getLogger("snapid.serve")
TOKEN_DOMAIN = b"snapid-handoff-v1|"
THUMB_SIDE, THUMB_QUALITY = 320, 80
SECRET_FILE = "session_secret"
MAX_LIVE_SESSIONS = 1000
PROBE_ADDRESS = ("10.255.255.255", 1)  # never routed; a UDP connect sends nothing, it only picks the interface


class SessionError(SnapidError):
    code = "session_error"
    status = 400


def _error(status: int, code: str, message: str) -> SessionError:
    return SessionError(message, code=code, status=status)


def bad_token() -> SessionError:
    return _error(401, "bad_token", "the phone link is not valid; scan the QR code on the computer again")


def session_expired() -> SessionError:
    return _error(410, "session_expired", "this hand-off session has expired; open a new QR code on the computer")


# --- the server secret -----------------------------------------------------------------------------
def server_secret(configured: str, home: Path) -> bytes:
    """``configured`` when set; else the workspace's secret file, created once with mode 0600."""
    if configured:
        return configured.encode()
    path = Path(home) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as fh:  # O_EXCL: of several workers starting at once, exactly one writes it
        fh.write(secrets.token_hex(32))
        fh.flush()
        os.fsync(fh.fileno())
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    _private(path)
    for _ in range(50):  # another worker may be between its create and its write
        text = path.read_text().strip()
        if len(text) >= 32:
            return text.encode()
        time.sleep(0.02)
    raise SnapidError(f"{path}: the session secret is empty or too short; delete the file to make a new one",
                      code="bad_session_secret", status=503)


def _private(path: Path) -> None:
    """The secret file must be readable by its owner only: a file that group or others may read (copied
    with another umask, or chmod-ed) is set back to 0600, and the log says so."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("%s was readable by %s (mode %04o); set it to 0600. If others may have read it, delete "
                    "the file and restart to make a new secret (phone links then in use stop working)",
                    path, "group and others" if mode & 0o070 and mode & 0o007 else "others" if mode & 0o007
                    else "the group", mode)


# --- tokens and keys -------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(secret: bytes, *, session_id: str, expires: int, nonce: str) -> str:
    payload = f"{session_id}.{expires}.{nonce}"
    return f"{payload}.{_b64(hmac.new(secret, TOKEN_DOMAIN + payload.encode(), hashlib.sha256).digest())}"


@dataclass(frozen=True)
class Claims:
    session_id: str
    expires: int
    nonce: str


_TOKEN = re.compile(r"^([0-9a-f]{32})\.([0-9]{1,12})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")


def verify_token(secret: bytes, token: str | None, *, session_id: str, now: float) -> Claims:
    """The token's claims when it is genuine, for ``session_id`` and not expired; else 401 / 403 / 410."""
    match = _TOKEN.match(token or "")
    if match is None:
        raise bad_token()
    sid, expires, nonce, _ = match.groups()
    expected = sign_token(secret, session_id=sid, expires=int(expires), nonce=nonce)
    if not hmac.compare_digest(expected.encode(), token.encode()):
        raise bad_token()
    if not hmac.compare_digest(sid, session_id):
        raise _error(403, "wrong_session", "this phone link belongs to another hand-off session")
    if int(expires) <= now:
        raise session_expired()
    return Claims(sid, int(expires), nonce)


def new_key() -> tuple[str, str]:
    """A desktop key and the sha256 kept of it."""
    key = secrets.token_urlsafe(32)
    return key, key_digest(key)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_key(key: str | None, digest: str) -> None:
    if not key or len(key) > 128 or not hmac.compare_digest(key_digest(key), digest):
        raise _error(401, "unauthorized", "missing or wrong desktop key (X-Snapid-Key header or key= parameter)")


# --- the phone URL and its QR code ----------------------------------------------------------------
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
        return f"{scheme}://127.0.0.1{port}", "no network address found: set --public-url so a phone can reach this server"
    return (f"{scheme}://{address}{port}",
            "a phone reaches this address only if the server listens on it (snapid serve --host 0.0.0.0) "
            "and both are on the same network")


def qr_svg(url: str) -> str:
    import segno  # only when a QR code is asked for

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False,
                                    title="QR code for the phone upload page")
    return buffer.getvalue().decode()


def thumbnail(data: bytes, limits: images.DecodeLimits) -> bytes:
    """A small upright JPEG of an uploaded photo, with no metadata (the photo itself is not kept)."""
    im = images.decode(data, limits=limits, min_size=(THUMB_SIDE, THUMB_SIDE), name="uploaded photo")
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


# --- bounds and notifications ----------------------------------------------------------------------
class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key; remembers at most ``max_keys`` keys."""

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 10_000):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._hits: OrderedDict[str, deque] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits  # most recent last
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        return allowed


class Hub:
    """Wakes the event streams of a session when a photo arrives in this process (other worker
    processes are seen by the streams' periodic database check). Holds an entry only while a stream waits."""

    def __init__(self):
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}

    def notify(self, session_id: str) -> None:
        event = self._events.get(session_id)
        if event is not None:
            event.set()

    async def wait(self, session_id: str, timeout: float) -> None:
        event = self._events.setdefault(session_id, asyncio.Event())
        self._waiting[session_id] = self._waiting.get(session_id, 0) + 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiting[session_id] -= 1
            if self._waiting[session_id] == 0 or event.is_set():
                self._events.pop(session_id, None)
            if self._waiting[session_id] == 0:
                del self._waiting[session_id]


# --- the access log never shows a token or key --------------------------------------------------------
_SECRETS_IN_URL = re.compile(r"(/m/)[^/?#\s\"]+|((?:token|key)=)[^&\s\"]+")


def redact(text: str) -> str:
    return _SECRETS_IN_URL.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


REDACT = RedactSecrets()


def install_log_redaction() -> None:
    """Idempotent: the same filter object is added once."""
    logging.getLogger("uvicorn.access").addFilter(REDACT)
