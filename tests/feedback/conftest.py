"""Feedback fixtures: the serving app (tests/serve's tiny colour bundle), a review token, and a helper
that predicts and keeps the photos as a consenting user."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.serve.app import create_app
from tests.serve.conftest import files, make_bundle

TOKEN = "r3view-t0ken-for-tests"  # at least 16 characters


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "bundles" / "colours")


@pytest.fixture
def settings(home) -> Settings:
    return Settings(home=home.home, reload_poll_s=0, review_token=TOKEN, drain_s=0.2)


@pytest.fixture
def client(settings, bundle):
    with TestClient(create_app(settings, bundle=bundle), raise_server_exceptions=False) as c:
        yield c


def predict_and_keep(client, *photos: bytes, name: str = "photo.jpg") -> tuple[str, list[str]]:
    """Predict, then keep the photos as the predict route does for a consenting user."""
    r = client.post("/api/v1/predict", files=files(*photos, name=name))
    assert r.status_code == 200, r.text
    prediction_id = r.json()["prediction_id"]
    kept = client.app.state.photo_store().save_all(list(photos), consent=True, prediction_id=prediction_id)
    return prediction_id, kept


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}
