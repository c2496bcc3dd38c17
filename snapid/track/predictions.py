"""Keyword-only access to answered predictions (the `predictions` table).

The server writes them in small batches from one writer thread (see
`snapid.serve.services.prediction_log`), so recording costs a request almost nothing, and deletes
old ones in the background (`prune_predictions`, in batches)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from snapid.errors import NotFound
from snapid.track.tables import FeedbackRow, PredictionRow, UploadRow

MAX_TOP = 10  # labels kept per prediction: enough for feedback, bounded per row


def record_predictions(session: Session, *, rows: list[dict]) -> int:
    """Insert answered predictions: dicts with id, model_name, model_version, model_sha256, top, unknown,
    n_photos, dataset and optionally created_at. Returns how many were added."""
    for r in rows:
        session.add(PredictionRow(
            id=r["id"], model_name=r.get("model_name", ""), model_version=r.get("model_version", ""),
            model_sha256=r["model_sha256"], dataset=str(r.get("dataset", ""))[:200],
            top=list(r.get("top", []))[:MAX_TOP], unknown=bool(r.get("unknown")), n_photos=int(r.get("n_photos", 1)),
            **({"created_at": r["created_at"]} if r.get("created_at") else {})))
    return len(rows)


def prediction_dict(row: PredictionRow) -> dict:
    created: datetime | None = row.created_at
    return {"id": row.id, "model_name": row.model_name, "model_version": row.model_version,
            "model_sha256": row.model_sha256, "top": row.top or [], "unknown": row.unknown,
            "n_photos": row.n_photos, "created_at": created.isoformat() if created else None}


def get_prediction(session: Session, *, prediction_id: str) -> dict:
    row = session.get(PredictionRow, prediction_id)
    if row is None:
        raise NotFound(f"no prediction with id {prediction_id!r}")
    return prediction_dict(row)


def count_predictions(session: Session, *, model_sha256: str | None = None) -> int:
    query = select(func.count()).select_from(PredictionRow)
    if model_sha256 is not None:
        query = query.where(PredictionRow.model_sha256 == model_sha256)
    return int(session.scalar(query) or 0)


def prune_predictions(session: Session, *, before: datetime, limit: int) -> int:
    """Delete at most ``limit`` predictions answered before ``before`` that no feedback and no kept
    photo refers to (those stay: review, merging and the photo's own retention need them). Returns how
    many went; fewer than ``limit`` means none is left."""
    stale = (select(PredictionRow.id)
             .where(PredictionRow.created_at < before,
                    ~exists().where(FeedbackRow.prediction_id == PredictionRow.id),
                    ~exists().where(UploadRow.prediction_id == PredictionRow.id))
             .limit(limit))
    ids = list(session.scalars(stale))
    if ids:
        session.execute(delete(PredictionRow).where(PredictionRow.id.in_(ids)))
    return len(ids)
