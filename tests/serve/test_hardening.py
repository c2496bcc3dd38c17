"""Startup and readiness hardening: readiness names a refused bundle by its code only (the log has the
reason, with its paths); tokens and keys shorter than 16 characters are refused at startup, naming the
setting; a session-secret file that others may read is set back to 0600, with a warning. Rows cited are
from ../shared/BAD_INPUTS.md."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.errors import UsageError
from snapid.serve.app import create_app
from snapid.serve.services import handoff_tokens as tokens
from tests.serve.conftest import make_bundle


def test_readiness_shows_the_code_of_a_refused_bundle_not_its_paths(home, tmp_path, caplog):
    """Row "Truncated checkpoint; wrong keys or shapes; NaN weights; hash mismatch": refused, readiness
    503 "with a clear log line". The 503 body goes to anyone who asks, so it carries the error code and
    no server path; the log line carries the whole reason."""
    bundle = make_bundle(tmp_path / "private" / "bundles" / "colours")
    with open(bundle / "model.onnx", "ab") as fh:
        fh.write(b"\0")  # no longer the sha256 in the manifest
    caplog.set_level(logging.ERROR, logger="snapid.serve")
    with TestClient(create_app(Settings(home=home.home, reload_poll_s=0), bundle=bundle),
                    raise_server_exceptions=False) as client:
        r = client.get("/healthz/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "not_ready" and "bad_bundle" in body["message"]
    assert str(tmp_path) not in r.text and "model.onnx" not in r.text and "sha256" not in r.text
    assert any(str(bundle) in rec.getMessage() and "sha256" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("name", ["admin_token", "review_token", "session_secret"])
def test_a_short_secret_is_refused_at_startup_naming_the_setting(home, bundle, name):
    settings = Settings(home=home.home, reload_poll_s=0, **{name: "fifteen-chars.."})
    with pytest.raises(UsageError) as err:
        create_app(settings, bundle=bundle)
    assert f"SNAPID_{name.upper()}" in err.value.message and "16" in err.value.message
    create_app(settings.model_copy(update={name: "sixteen-chars..."}), bundle=bundle)  # 16 is enough
    create_app(settings.model_copy(update={name: ""}), bundle=bundle)  # empty: that feature is off


def test_serve_refuses_a_short_secret_before_starting_any_worker(home, bundle):
    """With --workers N, a refusal inside each worker would only make uvicorn restart them for ever."""
    from snapid.serve.launch import serve_forever

    settings = Settings(home=home.home, admin_token="short")
    with pytest.raises(UsageError, match="SNAPID_ADMIN_TOKEN"):
        serve_forever(bundle, settings=settings, port=1, workers=2)


def test_a_secret_file_others_can_read_is_made_private_with_a_warning(home, caplog):
    path = home.home / tokens.SECRET_FILE
    first = tokens.server_secret("", home.home)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    caplog.set_level(logging.WARNING, logger="snapid.serve")
    assert tokens.server_secret("", home.home) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert any(str(path) in r.getMessage() and "0644" in r.getMessage() and "0600" in r.getMessage()
               for r in caplog.records)
