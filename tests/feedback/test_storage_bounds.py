"""Storage has bounds: kept photos a byte quota (past it the answer comes and says the photo was not
kept), predictions a retention (pruned in the background, in batches), and one prediction at most
SNAPID_FEEDBACK_PER_PREDICTION feedback records. Rows cited are from ../shared/BAD_INPUTS.md."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from snapid.feedback import service, storage
from snapid.serve.app import create_app
from snapid.serve.services.photos import prune_predictions
from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.track.predictions import record_predictions
from snapid.track.tables import FeedbackRow, PredictionRow, UploadRow, utcnow
from tests.serve.conftest import CLASSES, GREEN, RED, coloured, files


def _count(engine, table) -> int:
    with transaction(engine) as s:
        return int(s.scalar(select(func.count()).select_from(table)))


# --- the photo quota ---------------------------------------------------------------------------------------
def test_past_the_quota_the_answer_comes_and_says_the_photo_was_not_kept(settings, bundle):
    """Nothing is stored without consent (kept: not_asked); with consent, photos are kept until they total
    SNAPID_PHOTO_QUOTA_BYTES; then the answer is the same as ever, with kept: quota_full, and no row and
    no file is added."""
    red = coloured(RED)
    one_photo = len(storage.render(red).photo)
    quota = settings.model_copy(update={"photo_quota_bytes": one_photo + one_photo // 2})
    with TestClient(create_app(quota, bundle=bundle), raise_server_exceptions=False) as client:
        store = client.app.state.photo_store()
        r = client.post("/api/v1/predict", files=files(red))
        assert r.status_code == 200 and r.json()["kept"] == "not_asked"
        first = client.post("/api/v1/predict?consent=true", files=files(red))
        assert first.status_code == 200 and first.json()["kept"] == "kept"
        stored = sorted(p for p in store.root.rglob("*") if p.is_file())
        second = client.post("/api/v1/predict?consent=true", files=files(coloured(GREEN)))
        assert second.status_code == 200, second.text
        assert second.json()["kept"] == "quota_full" and second.json()["predictions"][0]["id"] == "green"
        each = client.post("/api/v1/predict?consent=true&mode=each", files=files(red, coloured(GREEN)))
        assert each.status_code == 200 and each.json()["kept"] == "quota_full"
        assert _count(store.engine, UploadRow) == 1
        assert sorted(p for p in store.root.rglob("*") if p.is_file()) == stored


def test_a_save_that_would_pass_the_quota_keeps_nothing(engine, tmp_path):
    store = storage.PhotoStore(tmp_path / "uploads", engine, quota_bytes=10)
    with pytest.raises(storage.QuotaFull) as err:
        store.save_all([coloured(RED), coloured(GREEN)], consent=True, prediction_id=None)
    assert "SNAPID_PHOTO_QUOTA_BYTES" in err.value.message
    assert _count(engine, UploadRow) == 0 and not [p for p in store.root.rglob("*") if p.is_file()]


# --- prediction retention ----------------------------------------------------------------------------------
def _predictions(engine, n: int, *, days_ago: float) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    when = utcnow() - timedelta(days=days_ago)
    with transaction(engine) as s:
        record_predictions(s, rows=[{"id": i, "model_sha256": "m" * 64, "top": [{"id": "red", "score": 0.9}],
                                     "created_at": when} for i in ids])
    return ids


def _remaining(engine) -> set[str]:
    with transaction(engine) as s:
        return set(s.scalars(select(PredictionRow.id)))


def test_old_predictions_without_feedback_or_photos_are_pruned_in_batches(engine):
    old = _predictions(engine, 5, days_ago=40)
    with_feedback, with_photo = _predictions(engine, 2, days_ago=40)
    recent = _predictions(engine, 2, days_ago=1)
    with transaction(engine) as s:
        track.add_feedback(s, id=str(uuid.uuid4()), prediction_id=with_feedback, client_key="client-key-1",
                           label="red", not_in_list=False, text="")
        track.add_upload(s, id=str(uuid.uuid4()), sha256="a" * 64, prediction_id=with_photo, size=1, width=1,
                         height=1, kept_until=None)
    assert prune_predictions(engine, keep_days=30, batch=2) == 5  # three transactions of at most two rows
    assert _remaining(engine) == {with_feedback, with_photo, *recent}
    assert not set(old) & _remaining(engine)
    assert prune_predictions(engine, keep_days=0) == 0  # 0: keep them all
    assert _remaining(engine) == {with_feedback, with_photo, *recent}


def test_the_server_prunes_old_predictions_in_the_background_at_startup(settings, bundle, engine):
    """Predictions were never deleted: a server answering for months grew its table without end."""
    old = _predictions(engine, 3, days_ago=31)
    with TestClient(create_app(settings.model_copy(update={"prediction_keep_days": 30}), bundle=bundle)) as client:
        deadline = time.monotonic() + 10
        while set(old) & _remaining(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not set(old) & _remaining(engine)
        assert client.post("/api/v1/predict", files=files(coloured(RED))).status_code == 200


# --- feedback per prediction -------------------------------------------------------------------------------
def test_a_prediction_takes_at_most_five_feedback_records(client):
    """Row "20 parallel uploads to one QR session: all stored up to the per-session cap, then 429", for the
    same kind of cap on feedback: new client keys cannot add rows without end. A repeat of a stored
    answer still gets 200 (idempotency), and the 429 is snapid's JSON error."""
    pid = client.post("/api/v1/predict", files=files(coloured(RED))).json()["prediction_id"]
    for n in range(5):
        r = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": f"client-key-{n:04d}",
                                                  "label": "red"})
        assert r.status_code == 201, r.text
    r = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": "client-key-9999", "label": "red"})
    assert r.status_code == 429 and r.json()["error"] == "feedback_limit" and set(r.json()) == {"error", "message"}
    again = client.post("/api/v1/feedback",
                        json={"prediction_id": pid, "client_key": "client-key-0000", "label": "green"})
    assert again.status_code == 200 and again.json()["label"] == "red"
    engine = client.app.state.db_engine()
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(FeedbackRow).where(FeedbackRow.prediction_id == pid)) == 5


def test_concurrent_feedback_never_passes_the_limit(engine):
    """Twelve clients answering one prediction at once: exactly five records, the others refused."""
    (pid,) = _predictions(engine, 1, days_ago=0)
    outcomes: list[str] = []

    def answer(n: int) -> None:
        try:
            service.record_feedback(engine, prediction_id=pid, client_key=f"racing-client-{n:03d}", label="red",
                                    classes=CLASSES, limit=5)
            outcomes.append("stored")
        except service.FeedbackLimit:
            outcomes.append("refused")

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused"] * 7 + ["stored"] * 5
    assert _count(engine, FeedbackRow) == 5
