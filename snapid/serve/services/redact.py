"""The access log never shows a hand-off token or key: they travel in URLs (/m/<token>, ?key=, ?token=)."""

from __future__ import annotations

import logging
import re

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
