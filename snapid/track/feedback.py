"""Keyword-only access to saved photos (`uploads`), user feedback (`feedback`) and promotion
decisions (`promotions`). Plain dicts out, never ORM objects; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from snapid.errors import NotFound
from snapid.track.tables import FeedbackRow, PredictionRow, PromotionRow, UploadRow, utcnow

STATUSES = ("pending", "approved", "rejected")
MODEL_KEY = "snapid-model-unsure"  # the client key of items the model files itself (snapid.feedback.unsure)
MAX_PAGE = 200


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- uploads ------------------------------------------------------------------------------------------------
def upload_dict(row: UploadRow) -> dict:
    return {"id": row.id, "sha256": row.sha256, "prediction_id": row.prediction_id, "bytes": row.bytes,
            "width": row.width, "height": row.height, "created_at": _iso(row.created_at),
            "kept_until": _iso(row.kept_until)}


def add_upload(session: Session, *, id: str, sha256: str, prediction_id: str | None, size: int, width: int,
               height: int, kept_until: datetime | None) -> None:
    session.add(UploadRow(id=id, sha256=sha256, prediction_id=prediction_id, bytes=size, width=width,
                          height=height, kept_until=kept_until))


def get_upload(session: Session, *, upload_id: str) -> dict:
    row = session.get(UploadRow, upload_id)
    if row is None:
        raise NotFound(f"no saved photo with id {upload_id!r}")
    return upload_dict(row)


def uploads_for_predictions(session: Session, *, prediction_ids: list[str]) -> dict[str, list[dict]]:
    """prediction_id → its saved photos, oldest first."""
    out: dict[str, list[dict]] = {p: [] for p in prediction_ids}
    if not prediction_ids:
        return out
    query = (select(UploadRow).where(UploadRow.prediction_id.in_(prediction_ids))
             .order_by(UploadRow.created_at, UploadRow.id))
    for row in session.scalars(query):
        out[row.prediction_id].append(upload_dict(row))
    return out


def stored_bytes(session: Session) -> int:
    """The bytes of every kept photo as the rows count them (a file shared by two rows counts twice)."""
    return int(session.scalar(select(func.coalesce(func.sum(UploadRow.bytes), 0))) or 0)


def upload_shas(session: Session) -> set[str]:
    """Every sha256 a row refers to (the sweep keeps exactly these files)."""
    return set(session.scalars(select(UploadRow.sha256).distinct()))


def uploads_by_sha(session: Session) -> dict[str, list[str]]:
    """sha256 → upload ids (to find rows whose file went missing)."""
    out: dict[str, list[str]] = {}
    for upload_id, sha in session.execute(select(UploadRow.id, UploadRow.sha256)):
        out.setdefault(sha, []).append(upload_id)
    return out


def expired_uploads(session: Session, *, created_before: datetime | None, now: datetime) -> list[str]:
    """Ids of rows past their own kept_until, or created before ``created_before``."""
    condition = UploadRow.kept_until < now
    if created_before is not None:
        condition = condition | (UploadRow.created_at < created_before)
    return list(session.scalars(select(UploadRow.id).where(condition)))


def delete_uploads(session: Session, *, ids: list[str]) -> set[str]:
    """Delete the rows; returns the sha256 values no remaining row refers to (their files may go)."""
    if not ids:
        return set()
    shas = set(session.scalars(select(UploadRow.sha256).where(UploadRow.id.in_(ids))))
    session.execute(delete(UploadRow).where(UploadRow.id.in_(ids)))
    still = set(session.scalars(select(UploadRow.sha256).where(UploadRow.sha256.in_(shas))))
    return shas - still


# --- feedback -----------------------------------------------------------------------------------------------
def feedback_dict(row: FeedbackRow) -> dict:
    return {"id": row.id, "prediction_id": row.prediction_id, "label": row.label, "not_in_list": row.not_in_list,
            "text": row.free_text, "status": row.status, "reviewer_label": row.reviewer_label,
            "final_label": row.reviewer_label or row.label, "reviewed_at": _iso(row.reviewed_at),
            "merged_dataset": row.merged_dataset, "merged_version": row.merged_version,
            "created_at": _iso(row.created_at), "source": "model" if row.client_key == MODEL_KEY else "user"}


def find_feedback(session: Session, *, prediction_id: str, client_key: str) -> dict | None:
    row = session.scalar(select(FeedbackRow).where(FeedbackRow.prediction_id == prediction_id,
                                                   FeedbackRow.client_key == client_key))
    return feedback_dict(row) if row else None


def add_feedback(session: Session, *, id: str, prediction_id: str, client_key: str, label: str | None,
                 not_in_list: bool, text: str) -> dict:
    """Insert one row; a second one for the same (prediction_id, client_key) raises IntegrityError on flush."""
    row = FeedbackRow(id=id, prediction_id=prediction_id, client_key=client_key, label=label,
                      not_in_list=not_in_list, free_text=text, status="pending")
    session.add(row)
    session.flush()
    return feedback_dict(row)


def count_feedback(session: Session, *, prediction_id: str) -> int:
    """Feedback rows of one prediction. Call it after adding one, in the same transaction: the prediction's
    row is locked first (PostgreSQL; SQLite already holds the write lock), so concurrent additions to the
    same prediction count one another."""
    session.execute(select(PredictionRow.id).where(PredictionRow.id == prediction_id).with_for_update())
    query = select(func.count()).select_from(FeedbackRow).where(FeedbackRow.prediction_id == prediction_id)
    return int(session.scalar(query) or 0)


def count_filed_since(session: Session, *, client_key: str, since: datetime) -> int:
    """Feedback rows filed under ``client_key`` since ``since`` (the model's unsure answers of a day)."""
    query = select(func.count()).select_from(FeedbackRow).where(FeedbackRow.client_key == client_key,
                                                                FeedbackRow.created_at >= since)
    return int(session.scalar(query) or 0)


def get_feedback(session: Session, *, feedback_id: str) -> dict:
    row = session.get(FeedbackRow, feedback_id)
    if row is None:
        raise NotFound(f"no feedback with id {feedback_id!r}")
    return feedback_dict(row)


def list_feedback(session: Session, *, status: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[dict], int]:
    """One page, oldest first (a queue), and the total count for that status."""
    query = select(FeedbackRow)
    count = select(func.count()).select_from(FeedbackRow)
    if status is not None:
        query, count = query.where(FeedbackRow.status == status), count.where(FeedbackRow.status == status)
    query = query.order_by(FeedbackRow.created_at, FeedbackRow.id).limit(min(limit, MAX_PAGE)).offset(offset)
    return [feedback_dict(r) for r in session.scalars(query)], int(session.scalar(count) or 0)


def set_review(session: Session, *, feedback_id: str, status: str, reviewer_label: str | None) -> dict:
    row = session.get(FeedbackRow, feedback_id)
    if row is None:
        raise NotFound(f"no feedback with id {feedback_id!r}")
    row.status, row.reviewer_label, row.reviewed_at = status, reviewer_label, utcnow()
    session.flush()
    return feedback_dict(row)


def approved_feedback(session: Session, *, dataset: str | None = None) -> list[dict]:
    """Approved feedback with a final label, oldest first; with ``dataset``, only feedback on predictions
    of that dataset's models (or of bundles that do not name their dataset: hand-made ones)."""
    query = select(FeedbackRow).where(FeedbackRow.status == "approved").order_by(FeedbackRow.created_at, FeedbackRow.id)
    if dataset is not None:
        query = (query.join(PredictionRow, PredictionRow.id == FeedbackRow.prediction_id)
                 .where(PredictionRow.dataset.in_([dataset, ""])))
    return [d for d in map(feedback_dict, session.scalars(query)) if d["final_label"]]


def unlabelled_not_in_list(session: Session, *, limit: int) -> list[dict]:
    """Approved "not in the list" feedback that no class names yet (neither the user nor a reviewer gave one),
    not merged, oldest first: the candidates for a new class (snapid.feedback.new_class)."""
    query = (select(FeedbackRow)
             .where(FeedbackRow.status == "approved", FeedbackRow.not_in_list.is_(True), FeedbackRow.label.is_(None),
                    FeedbackRow.reviewer_label.is_(None), FeedbackRow.merged_version.is_(None))
             .order_by(FeedbackRow.created_at, FeedbackRow.id).limit(limit))
    return [feedback_dict(r) for r in session.scalars(query)]


def get_feedback_many(session: Session, *, ids: list[str]) -> dict[str, dict]:
    """id → feedback, for the ids that exist."""
    if not ids:
        return {}
    return {r.id: feedback_dict(r) for r in session.scalars(select(FeedbackRow).where(FeedbackRow.id.in_(ids)))}


def mark_merged(session: Session, *, ids: list[str], dataset: str, version: int) -> None:
    if ids:
        session.execute(update(FeedbackRow).where(FeedbackRow.id.in_(ids))
                        .values(merged_dataset=dataset, merged_version=version))


# --- promotions ---------------------------------------------------------------------------------------------
def promotion_dict(row: PromotionRow) -> dict:
    return {"id": row.id, "dataset": row.dataset, "candidate": row.candidate, "current": row.current,
            "split": row.split, "candidate_top1": row.candidate_top1, "current_top1": row.current_top1,
            "margin": row.margin, "promoted": row.promoted, "reason": row.reason, "details": row.details or {},
            "bundle_path": row.bundle_path, "created_at": _iso(row.created_at)}


def record_promotion(session: Session, *, dataset: str, candidate: str, current: str, split: str,
                     candidate_top1: float, current_top1: float, margin: float, promoted: bool, reason: str,
                     details: dict, bundle_path: str = "") -> dict:
    row = PromotionRow(dataset=dataset, candidate=candidate, current=current, split=split,
                       candidate_top1=candidate_top1, current_top1=current_top1, margin=margin, promoted=promoted,
                       reason=reason, details=details, bundle_path=bundle_path)
    session.add(row)
    session.flush()
    return promotion_dict(row)


def list_promotions(session: Session, *, dataset: str | None = None, limit: int = 50) -> list[dict]:
    query = (select(PromotionRow).order_by(PromotionRow.created_at.desc(), PromotionRow.id.desc())
             .limit(min(limit, MAX_PAGE)))
    if dataset is not None:
        query = query.where(PromotionRow.dataset == dataset)
    return [promotion_dict(r) for r in session.scalars(query)]
