"""A review queue the model fills (issue 20): unsure answers with kept photos go to /review pre-labelled with the
model's top 3, only with consent, at most SNAPID_REVIEW_UNSURE_PER_DAY a day; approved, they merge like feedback."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.feedback import service
from snapid.feedback.merge import merge_feedback
from snapid.feedback.storage import PhotoStore
from snapid.feedback.unsure import MODEL_KEY, file_unsure, is_unsure
from snapid.serve.app import create_app
from tests.feedback.conftest import TOKEN, auth
from tests.feedback.test_merge import CLASSES, answered, manifest
from tests.serve.conftest import RED, coloured, files, make_bundle

YELLOW = (220, 220, 40)   # as red as it is green: the colour model is unsure


def _body(*scores, unknown=False):
    return {"unknown": unknown, "predictions": [{"id": f"c{i}", "score": s} for i, s in enumerate(scores)]}


def test_unsure_means_unknown_or_a_small_margin():
    assert is_unsure(_body(0.9, 0.05), 0.15) is False
    assert is_unsure(_body(0.5, 0.4, 0.1), 0.15) is True
    assert is_unsure(_body(0.9, 0.05, unknown=True), 0.15) is True
    assert is_unsure(_body(0.55), 0.15) is True and is_unsure(_body(0.6), 0.15) is False  # k=1: second <= 1 - best


@pytest.fixture
def make_client(home, tmp_path):
    clients = []

    def make(**kw):
        settings = Settings(home=home.home, reload_poll_s=0, review_token=TOKEN, drain_s=0.2, **kw)
        client = TestClient(create_app(settings, bundle=make_bundle(tmp_path / "bundles" / "colours")),
                            raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client
    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _predict(client, rgb, consent: bool):
    r = client.post(f"/api/v1/predict?consent={str(consent).lower()}", files=files(coloured(rgb)))
    assert r.status_code == 200, r.text
    return r.json()


def test_unsure_answers_fill_the_queue_only_with_consent(make_client):
    client = make_client()
    assert _predict(client, YELLOW, consent=False)["kept"] == "not_asked"
    assert client.get("/api/v1/review", headers=auth()).json()["total"] == 0  # no consent: nothing to review
    sure = _predict(client, RED, consent=True)
    assert sure["kept"] == "kept"
    assert client.get("/api/v1/review", headers=auth()).json()["total"] == 0  # sure: not filed
    unsure = _predict(client, YELLOW, consent=True)
    page = client.get("/api/v1/review", headers=auth()).json()
    assert page["total"] == 1
    item = page["items"][0]
    best = unsure["predictions"][0]
    assert item["prediction_id"] == unsure["prediction_id"] and item["source"] == "model"
    assert item["label"] == best["id"] and item["status"] == "pending" and len(item["uploads"]) == 1
    assert "unsure" in item["text"] and best["id"] in item["text"]
    client.app.state.prediction_log.flush(timeout=2.0)
    page = client.get("/api/v1/review", headers=auth()).json()
    assert [a["id"] for a in page["items"][0]["model_answer"]] == [p["id"] for p in unsure["predictions"][:3]]
    # one click: the reviewer says it is the runner-up
    second = unsure["predictions"][1]["id"]
    r = client.post(f"/api/v1/review/{item['id']}", json={"action": "relabel", "label": second}, headers=auth())
    assert r.status_code == 200 and r.json()["final_label"] == second and r.json()["status"] == "approved"


def test_the_daily_cap_keeps_the_queue_reviewable(make_client):
    client = make_client(review_unsure_per_day=2)
    for _ in range(4):
        _predict(client, YELLOW, consent=True)
    assert client.get("/api/v1/review", headers=auth()).json()["total"] == 2
    off = make_client(review_unsure_per_day=0)
    _predict(off, YELLOW, consent=True)
    assert off.get("/api/v1/review", headers=auth()).json()["total"] == 2  # 0: none filed


def test_approved_unsure_items_merge_into_the_next_version(shapes, engine, home):
    store = PhotoStore(home.uploads, engine)
    pid = answered(engine, store, n_photos=1, seed=5)
    body = {"unknown": True, "predictions": [{"id": "disc", "score": 0.4}, {"id": "square", "score": 0.35}]}
    record = file_unsure(engine, prediction_id=pid, body=body, per_day=5)
    assert record is not None and record["source"] == "model" and record["label"] == "disc"
    assert file_unsure(engine, prediction_id=pid, body=body, per_day=5) is None  # once per prediction
    service.review(engine, feedback_id=record["id"], action="relabel", label="square", classes=CLASSES)
    before = manifest(engine)
    result = merge_feedback("shapes", workspace=home, engine=engine)
    assert result["version"] == before.version + 1 and result["added"] == 1
    assert manifest(engine).samples[-1].label == "square"
    assert MODEL_KEY == "snapid-model-unsure"
