"""The secrets of the QR phone hand-off: the server secret, the phone tokens it signs, the desktop keys.

A desktop page opens a hand-off session, a phone sends photos to it, the desktop sees them.

Two secrets per session, never stored in clear and never logged:
- the **phone token**, in the QR code: ``<session id>.<expiry>.<nonce>.<HMAC-SHA256>`` signed with the
  server secret. It allows up to ``max_uploads`` photos until it expires; a session opened with
  ``single=true`` makes it single-use (one photo, then 409). Checks, in order: a malformed token or a bad
  HMAC → 401; a valid token of another session → 403; past its expiry (or its session swept) → 410
  ``session_expired``; a single-use token already used → 409; the cap reached → 429.
- the **desktop key**, returned once at creation; only its sha256 is kept. It reads the session's events
  and results (header ``X-Snapid-Key``, or ``?key=`` for EventSource, which cannot set headers).
Both are compared with ``hmac.compare_digest``; the access log redacts them from URLs (`redact`).

Photos are never kept: a session stores each photo's thumbnail (a small JPEG in the database) and the
answer, and everything is deleted once the session has expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from snapid.errors import SnapidError

log = logging.getLogger("snapid.serve")
TOKEN_DOMAIN = b"snapid-handoff-v1|"
SECRET_FILE = "session_secret"


class HandoffError(SnapidError):
    code = "session_error"
    status = 400


def _error(status: int, code: str, message: str) -> HandoffError:
    return HandoffError(message, code=code, status=status)


def bad_token() -> HandoffError:
    return _error(401, "bad_token", "the phone link is not valid; scan the QR code on the computer again")


def session_expired() -> HandoffError:
    return _error(410, "session_expired", "this hand-off session has expired; open a new QR code on the computer")


# --- the server secret, which signs the phone tokens ----------------------------------------------
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
