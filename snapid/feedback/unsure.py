"""A review queue the model fills (issue 20): with consent, a served answer that came out "unknown", or whose
best score leads the second by less than a margin, goes to the review queue (`/review`) pre-labelled with the
model's best guess, its top 3 beside it, so a reviewer confirms or corrects it with one click. Approved, it
is merged into the next dataset version like any feedback (`snapid data merge-feedback`).

Such an item is a feedback row under the client key ``MODEL_KEY`` (one per prediction, like a user's), its
label the model's best guess and its note the top 3 with their scores. A per-day cap (UTC days,
SNAPID_REVIEW_UNSURE_PER_DAY) keeps the queue reviewable: the row is inserted, then the day's rows are
counted in the same transaction and the insert is rolled back past the cap, so concurrent answers cannot
pass it together. Only predictions whose photos were kept (consent given, quota not full) are filed: without
a photo there is nothing to review."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.track.feedback import MODEL_KEY

TOP = 3

__all__ = ["MODEL_KEY", "file_unsure", "is_unsure"]


class _OverCap(Exception):
    pass


def is_unsure(body: dict, margin: float) -> bool:
    """An answer body (predictions best first, unknown) that a person should look at: "unknown", or the best
    score ahead of the second by less than ``margin``. With one prediction only (k=1) the second is at most
    1 - best, so the margin is at least 2 best - 1."""
    predictions = body.get("predictions") or []
    if body.get("unknown"):
        return True
    if not predictions:
        return False
    best = float(predictions[0]["score"])
    second = float(predictions[1]["score"]) if len(predictions) > 1 else 1.0 - best
    return best - second < margin


def note(body: dict) -> str:
    top = ", ".join(f"{p['id']} {round(100 * float(p['score']))}%" for p in (body.get("predictions") or [])[:TOP])
    return f"the model was unsure ({'unknown' if body.get('unknown') else 'close call'}): {top}"


def file_unsure(engine: Engine, *, prediction_id: str, body: dict, per_day: int,
                now: datetime | None = None) -> dict | None:
    """File one unsure answer for review; the new feedback record, or None when the day's ``per_day`` are
    filed already (or ``per_day`` is 0, or the prediction has no answer, or it was filed before)."""
    predictions = body.get("predictions") or []
    if per_day <= 0 or not predictions:
        return None
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        with transaction(engine) as s:
            record = track.add_feedback(s, id=str(uuid.uuid4()), prediction_id=prediction_id, client_key=MODEL_KEY,
                                        label=str(predictions[0]["id"]), not_in_list=False, text=note(body))
            if track.count_filed_since(s, client_key=MODEL_KEY, since=midnight) > per_day:
                raise _OverCap
        return record
    except (_OverCap, IntegrityError):
        return None
