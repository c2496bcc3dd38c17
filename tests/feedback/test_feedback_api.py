"""POST /api/v1/feedback and the review queue, through the real app on a real ONNX bundle."""

from __future__ import annotations

import json
import os
import time
import uuid

from sqlalchemy import text

from snapid.serve.app import create_app
from tests.feedback.conftest import TOKEN, auth, predict_and_keep
from tests.serve.conftest import GREEN, RED, coloured, files

KEY = "client-key-0001"


def send(client, prediction_id, **fields):
    return client.post("/api/v1/feedback", json={"prediction_id": prediction_id, "client_key": KEY, **fields})


def test_feedback_right_after_predict_is_stored_once_per_client_key(client):
    pid = client.post("/api/v1/predict", files=files(coloured(RED))).json()["prediction_id"]
    first = send(client, pid, label="green")  # no flush: the route waits for the prediction log itself
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True and body["status"] == "pending" and body["label"] == "green"
    again = send(client, pid, label="blue")  # a retry with another answer: the first one is kept
    assert again.status_code == 200 and again.json()["feedback_id"] == body["feedback_id"]
    assert again.json()["label"] == "green" and again.json()["created"] is False
    other = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": "another-client", "label": "red"})
    assert other.status_code == 201 and other.json()["feedback_id"] != body["feedback_id"]


def test_feedback_label_wrong_case_or_whitespace_normalised_else_422(client):
    """BAD_INPUTS: Feedback label not in the class list; wrong case or extra whitespace → 422 (or
    normalise; one documented rule): exact id, else a unique case/space-insensitive id or name match."""
    pid = client.post("/api/v1/predict", files=files(coloured(RED))).json()["prediction_id"]
    assert send(client, pid, label="  RED ").json()["label"] == "red"
    assert client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": "key-by-name",
                                                 "label": "green   THING"}).json()["label"] == "green"
    for bad in ("purple", "re d", "thing"):  # unknown, or several classes' names contain it
        r = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": "key-bad-label", "label": bad})
        assert r.status_code == 422 and r.json()["error"] == "unknown_label", r.text


def test_feedback_for_unknown_prediction_404(client):
    """BAD_INPUTS: Feedback for an upload ID that does not exist → 404."""
    r = send(client, str(uuid.uuid4()), label="red")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = send(client, "../../etc/passwd", label="red")
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_feedback_field_rules_422(client):
    pid = client.post("/api/v1/predict", files=files(coloured(RED))).json()["prediction_id"]
    cases = [{"label": "red", "not_in_list": True}, {}, {"not_in_list": True, "text": "x" * 501},
             {"label": "red", "extra": 1}, {"label": "red", "client_key": "short"}, {"label": ["red"]}]
    for fields in cases:
        r = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": KEY, **fields})
        assert r.status_code == 422, (fields, r.text)
        assert set(r.json()) == {"error", "message"}
    r = client.post("/api/v1/feedback", content=b"prediction_id=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422


def test_feedback_sql_injection_strings_stored_as_given(client, engine):
    """BAD_INPUTS: `'; DROP TABLE feedback;--` or `" OR 1=1` in any field: stored as given, schema intact."""
    pid = client.post("/api/v1/predict", files=files(coloured(RED))).json()["prediction_id"]
    note = "'; DROP TABLE feedback;-- \" OR 1=1 <script>alert(1)</script>"
    assert send(client, pid, not_in_list=True, text=note).status_code == 201
    r = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": "k2345678", "label": "' OR 1=1 --"})
    assert r.status_code == 422
    with engine.connect() as c:
        assert c.execute(text("SELECT free_text FROM feedback")).scalars().all() == [note]
    items = client.get("/api/v1/review", headers=auth()).json()["items"]
    assert items[0]["text"] == note and items[0]["not_in_list"] is True


def test_feedback_deeply_nested_or_huge_json_413_or_422(client):
    """BAD_INPUTS: Deeply nested or huge JSON sent to feedback → 413 or 422."""
    deep = b"[" * 5000 + b"]" * 5000
    r = client.post("/api/v1/feedback", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    nested = {"prediction_id": str(uuid.uuid4()), "client_key": KEY, "label": "red"}
    for _ in range(200):
        nested = {"x": nested}
    assert client.post("/api/v1/feedback", json=nested).status_code == 422
    huge = json.dumps({"prediction_id": str(uuid.uuid4()), "client_key": KEY, "text": "x" * 100_000}).encode()
    r = client.post("/api/v1/feedback", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert client.get("/health/ready").status_code == 200


def test_review_needs_the_token(client, settings, bundle):
    from fastapi.testclient import TestClient

    for headers in ({}, auth("wrong"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        assert client.get("/api/v1/review", headers=headers).status_code == 401
        assert client.post(f"/api/v1/review/{uuid.uuid4()}", json={"action": "reject"},
                           headers=headers).status_code == 401
        assert client.get(f"/api/v1/uploads/{uuid.uuid4()}/thumb", headers=headers).status_code == 401
    with TestClient(create_app(settings.model_copy(update={"review_token": ""}), bundle=bundle)) as off:
        r = off.get("/api/v1/review", headers=auth(""))
        assert r.status_code == 403 and r.json()["error"] == "review_disabled"


def test_feedback_review_queue_thumbnails_and_actions(client):
    pid_red, kept = predict_and_keep(client, coloured(RED))
    pid_green, _ = predict_and_keep(client, coloured(GREEN))
    pid_none = client.post("/api/v1/predict", files=files(coloured(GREEN))).json()["prediction_id"]
    ids = [send(client, pid_red, label="red").json()["feedback_id"],
           send(client, pid_green, label="red").json()["feedback_id"],
           send(client, pid_none, not_in_list=True, text="a lime").json()["feedback_id"]]
    page = client.get("/api/v1/review?status=pending", headers=auth()).json()
    assert [i["id"] for i in page["items"]] == ids and page["total"] == 3
    first = page["items"][0]
    assert first["uploads"] == kept and first["model_answer"][0]["id"] == "red"
    assert first["model_answer"][0]["name"] == "Red thing"
    assert {c["id"] for c in page["classes"]} == {"red", "green", "blue"}
    thumb = client.get(f"/api/v1/uploads/{kept[0]}/thumb", headers=auth())
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    assert client.get(f"/api/v1/uploads/{uuid.uuid4()}/thumb", headers=auth()).status_code == 404
    assert client.get("/api/v1/uploads/..%2F..%2Fetc%2Fpasswd/thumb", headers=auth()).status_code in (404, 422)

    def act(i, **body):
        return client.post(f"/api/v1/review/{i}", json=body, headers=auth())

    assert act(ids[0], action="approve").json()["final_label"] == "red"
    relabelled = act(ids[1], action="relabel", label=" Green ").json()
    assert relabelled["status"] == "approved" and relabelled["final_label"] == "green"
    approved = act(ids[2], action="approve").json()  # "not in the list", agreed: a candidate for a new class
    assert approved["status"] == "approved" and approved["final_label"] is None
    assert act(ids[2], action="relabel", label="purple").status_code == 422
    assert act(ids[2], action="reject").json()["status"] == "rejected"
    assert act(str(uuid.uuid4()), action="reject").status_code == 404
    assert act(ids[0], action="delete").status_code == 422
    assert client.get("/api/v1/review?status=pending", headers=auth()).json()["total"] == 0
    assert client.get("/api/v1/review?status=approved", headers=auth()).json()["total"] == 2
    assert client.get("/api/v1/review?status=everything", headers=auth()).status_code == 422


def test_review_page_is_static_with_csp_and_no_inline_script(client):
    r = client.get("/review")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<script type="module" src="/static/review/review.js"></script>' in html
    assert html.count("<script") == 1 and "onclick" not in html
    js = client.get("/static/review/review.js")
    assert js.status_code == 200 and ".innerHTML" not in js.text and "insertAdjacentHTML" not in js.text


def test_hostile_filenames_stored_under_server_ids_inside_the_root(client, home, tmp_path):
    """BAD_INPUTS: Filenames `../../etc/passwd`, `..\\x`, `/abs`, a 4 KB name, an RTL override, emoji:
    stored under a server-made id; nothing written outside the root."""
    names = ["../../etc/passwd", "..\\x.jpg", "/abs/x.jpg", "n" * 4096, "evil\u202egpj.exe", "🌵.jpg", "CON"]
    before = set(os.listdir(tmp_path))
    for i, name in enumerate(names):
        predict_and_keep(client, coloured((200, 30 + i * 20, 40)), name=name)
    stored = [p.relative_to(home.uploads) for p in home.uploads.rglob("*") if p.is_file()]
    assert len(stored) == 2 * len(names)
    for rel in stored:
        assert len(rel.parts) == 2 and len(rel.parts[0]) == 2 and rel.parts[1].startswith(rel.parts[0])
        assert rel.name.endswith(".jpg") and all(c in "0123456789abcdef." or c.isalpha() for c in rel.name)
    assert set(os.listdir(tmp_path)) == before


def test_orphan_upload_files_swept_at_startup(settings, bundle, home):
    """F2: a save killed between its file and its row leaves an orphan file; the next start removes it."""
    orphan = home.uploads / "ef" / ("ef" + "2" * 62 + ".jpg")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a photo")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, bundle=bundle)) as c:
        deadline = time.monotonic() + 10
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not orphan.exists()
        assert c.get("/health/ready").status_code == 200
        assert c.app.state.photo_store().root == home.uploads
