"""The prediction API on a real bundle: answers, combination of photos, model info, records."""

from __future__ import annotations

import uuid

from snapid.track.db import transaction
from snapid.track.predictions import get_prediction
from tests.serve import prom
from tests.serve.conftest import GREEN, RED, coloured, files


def test_predict_answers_the_right_class_with_calibrated_scores(client):
    r = client.post("/api/v1/predict", files=files(coloured(RED)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"][0]["id"] == "red"
    assert abs(sum(p["score"] for p in body["predictions"]) - 1.0) < 1e-4
    assert body["unknown"] is False and body["photos"] == 1
    assert body["model"]["name"] == "colours" and body["model"]["version"] == "1" and len(body["model"]["sha256"]) == 64
    assert set(body["timings_ms"]) == {"decode", "inference", "total"}
    uuid.UUID(body["prediction_id"])


def test_security_headers_on_every_response(client):
    for r in (client.get("/healthz/live"), client.get("/nope"), client.post("/api/v1/predict")):
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_several_photos_are_averaged(client):
    red = client.post("/api/v1/predict", files=files(coloured(RED))).json()
    green = client.post("/api/v1/predict", files=files(coloured(GREEN))).json()
    both = client.post("/api/v1/predict", files=files(coloured(RED), coloured(GREEN))).json()
    assert both["photos"] == 2
    score = {p["id"]: p["score"] for p in both["predictions"]}
    expect = {i: (next(p["score"] for p in red["predictions"] if p["id"] == i)
                  + next(p["score"] for p in green["predictions"] if p["id"] == i)) / 2 for i in score}
    assert all(abs(score[i] - expect[i]) < 1e-4 for i in score)


def test_top_k_and_language(client):
    body = client.post("/api/v1/predict?k=1&lang=ko", files=files(coloured(RED))).json()
    assert len(body["predictions"]) == 1 and body["predictions"][0]["display_name"] == "빨강"


def test_unknown_when_best_score_is_under_threshold(tmp_path, settings):
    from fastapi.testclient import TestClient

    from snapid.serve.app import create_app
    from tests.serve.conftest import make_bundle

    grey = coloured((128, 128, 128))  # equal channels: every class about 1/3
    with TestClient(create_app(settings, bundle=make_bundle(tmp_path / "b", threshold=0.9))) as c:
        body = c.post("/api/v1/predict", files=files(grey)).json()
    assert body["unknown"] is True and body["threshold"] == 0.9


def test_model_and_classes(client):
    info = client.get("/api/v1/model").json()
    assert info["classes"] == 3 and info["input_size"] == 32 and info["version"] == "1"
    classes = client.get("/api/v1/classes").json()["classes"]
    assert [c["id"] for c in classes] == ["red", "green", "blue"]


def test_health_and_metrics(client):
    assert client.get("/healthz/live").status_code == 200
    assert client.get("/healthz/ready").json()["model"]["name"] == "colours"
    assert client.get("/health/ready").status_code == 200
    client.post("/api/v1/predict", files=files(coloured(RED)))
    text = client.get("/metrics").text
    assert prom.value(text, "snapid_requests_total", method="POST", route="/api/v1/predict", status="200") == 1
    assert prom.value(text, "snapid_batch_size_count") == 1 and prom.value(text, "snapid_queue_depth") == 0
    assert prom.value(text, "snapid_request_seconds_bucket", route="/api/v1/predict", le="+Inf") == 1
    assert prom.value(text, "process_resident_memory_bytes") > 0


def test_prediction_is_recorded_for_feedback(client, engine):
    body = client.post("/api/v1/predict", files=files(coloured(RED))).json()
    client.app.state.prediction_log.flush()
    with transaction(engine) as s:
        row = get_prediction(s, prediction_id=body["prediction_id"])
    assert row["model_sha256"] == body["model"]["sha256"] and row["top"][0]["id"] == "red"


def test_without_a_bundle_the_app_serves_but_is_not_ready(settings):
    from fastapi.testclient import TestClient

    from snapid.serve.app import create_app

    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz/live").status_code == 200
        assert c.get("/healthz/ready").status_code == 503
        r = c.post("/api/v1/predict", files=files(coloured(RED)))
        assert r.status_code == 503 and r.json()["error"] == "no_model" and "retry-after" in r.headers
