"""Feedback on predictions, and the review of it.

Label rule (one rule, documented in the API): the label sent must name one of the served model's
classes. An exact class id is taken as is. Otherwise the text is compared after Unicode NFC,
trimming, collapsing inner whitespace and case-folding, against every class id and class name; a
single match is stored as that class's id. No match, or several, is 422 ``unknown_label``.

Idempotency: one feedback per (prediction_id, client_key). Sending it again returns the first
record unchanged (first answer wins), so a client may retry after a timeout or a crash without
creating a duplicate; the unique constraint makes that hold under races and across processes.

Bound: one prediction accepts at most ``limit`` feedback records (SNAPID_FEEDBACK_PER_PREDICTION, 5),
so new client keys cannot grow the table without end; more are 429 ``feedback_limit`` (a repeat of a
stored one still answers 200). The count is taken after the insert in the same transaction, so
concurrent requests cannot pass the limit together.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from snapid.errors import NotFound, SnapidError
from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.track.predictions import get_prediction

MAX_TEXT = 500
MAX_LABEL = 200
CLIENT_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
ACTIONS = ("approve", "relabel", "reject")


class UnknownLabel(SnapidError):
    code = "unknown_label"
    status = 422


class InvalidFeedback(SnapidError):
    code = "invalid_feedback"
    status = 422


class FeedbackLimit(SnapidError):
    code = "feedback_limit"
    status = 429


class ReviewConflict(SnapidError):
    code = "already_merged"
    status = 409


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def match_label(label: str, classes: list[dict]) -> str:
    """The class id ``label`` names under the label rule (module docstring), or UnknownLabel."""
    if any(c["id"] == label for c in classes):
        return label
    wanted = normalise(label)
    hits = {c["id"] for c in classes if wanted and wanted in (normalise(c["id"]), normalise(str(c.get("name") or "")))}
    if len(hits) == 1:
        return hits.pop()
    shown = ", ".join(repr(c["id"]) for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
    why = "matches several classes" if hits else "is not one of the model's classes"
    raise UnknownLabel(f"label {label[:MAX_LABEL]!r} {why} ({shown}); send a class id, "
                       "or not_in_list=true with a short text")


def _check_fields(client_key: str, label: str | None, not_in_list: bool, text: str) -> None:
    if not CLIENT_KEY.match(client_key or ""):
        raise InvalidFeedback("client_key must be 8-64 letters, digits, '_' or '-' (one random key per client)")
    if (label is None) == (not not_in_list):
        raise InvalidFeedback("send exactly one of: label (a class id), or not_in_list=true (with an optional text)")
    if len(text) > MAX_TEXT or "\x00" in text:
        raise InvalidFeedback(f"text must be at most {MAX_TEXT} characters, without NUL")
    if label is not None and (len(label) > MAX_LABEL or "\x00" in label):
        raise InvalidFeedback(f"label must be at most {MAX_LABEL} characters, without NUL")


def _prediction_exists(engine: Engine, prediction_id: str) -> bool:
    try:
        with transaction(engine) as s:
            get_prediction(s, prediction_id=prediction_id)
        return True
    except NotFound:
        return False


def record_feedback(engine: Engine, *, prediction_id: str, client_key: str, label: str | None = None,
                    not_in_list: bool = False, text: str = "", classes: list[dict],
                    catch_up: Callable[[], None] | None = None, limit: int = 0) -> tuple[dict, bool]:
    """Store feedback once per (prediction_id, client_key), at most ``limit`` per prediction (0: no
    limit); returns (record, created).

    ``catch_up`` is called once when the prediction is not in the database yet (the server writes
    predictions in the background), before answering 404."""
    _check_fields(client_key, label, not_in_list, text)
    with transaction(engine) as s:
        existing = track.find_feedback(s, prediction_id=prediction_id, client_key=client_key)
    if existing:
        return existing, False
    if not _prediction_exists(engine, prediction_id):
        if catch_up is not None:
            catch_up()
        if catch_up is None or not _prediction_exists(engine, prediction_id):
            raise NotFound(f"no prediction with id {prediction_id!r}; send the prediction_id a predict answer gave")
    class_id = match_label(label, classes) if label is not None else None
    try:
        with transaction(engine) as s:
            record = track.add_feedback(s, id=str(uuid.uuid4()), prediction_id=prediction_id, client_key=client_key,
                                        label=class_id, not_in_list=not_in_list, text=text)
            if limit > 0 and track.count_feedback(s, prediction_id=prediction_id) > limit:
                raise FeedbackLimit(f"prediction {prediction_id} already has {limit} feedback answers, the most one "
                                    "prediction takes (SNAPID_FEEDBACK_PER_PREDICTION); nothing was stored")
        return record, True
    except IntegrityError:  # the same key won a race in another request or process
        with transaction(engine) as s:
            return track.find_feedback(s, prediction_id=prediction_id, client_key=client_key), False


def review(engine: Engine, *, feedback_id: str, action: str, label: str | None = None, classes: list[dict]) -> dict:
    """approve (keep the user's label, or agree it is not in the list), relabel (approve with ``label``) or reject
    one feedback."""
    if action not in ACTIONS:
        raise InvalidFeedback(f"action {action!r}: use one of {', '.join(ACTIONS)}")
    with transaction(engine) as s:
        item = track.get_feedback(s, feedback_id=feedback_id)
        if item["merged_version"] is not None:
            raise ReviewConflict(f"feedback {feedback_id} is already in dataset {item['merged_dataset']!r} "
                                 f"version {item['merged_version']}; it can no longer change")
        if action == "reject":
            return track.set_review(s, feedback_id=feedback_id, status="rejected", reviewer_label=None)
        if action == "approve":
            if item["label"] is None and not item["not_in_list"]:
                raise InvalidFeedback(f"feedback {feedback_id} has no label to approve: relabel it, or reject it")
            # "not in the list" approved: the photo shows a class the model lacks; such items can become a new
            # class (snapid.feedback.new_class), and merge-feedback skips them while they name none
            return track.set_review(s, feedback_id=feedback_id, status="approved", reviewer_label=None)
        if not label:
            raise InvalidFeedback("relabel needs a label (a class id)")
        return track.set_review(s, feedback_id=feedback_id, status="approved",
                                reviewer_label=match_label(label, classes))


def review_queue(engine: Engine, *, status: str | None = "pending", limit: int = 50, offset: int = 0,
                 classes: list[dict] | None = None) -> dict:
    """A page of feedback with the model's answer and the ids of the saved photos."""
    if status is not None and status not in track.STATUSES:
        raise InvalidFeedback(f"status {status!r}: use one of {', '.join(track.STATUSES)}")
    names = {c["id"]: str(c.get("name") or c["id"]) for c in classes or []}
    with transaction(engine) as s:
        items, total = track.list_feedback(s, status=status, limit=limit, offset=offset)
        photos = track.uploads_for_predictions(s, prediction_ids=[i["prediction_id"] for i in items])
        answers = {i["prediction_id"]: _answer(s, i["prediction_id"]) for i in items}
    for item in items:
        top = answers[item["prediction_id"]]
        item["model_answer"] = [{**t, "name": names.get(t.get("id"), t.get("id"))} for t in top]
        item["uploads"] = [p["id"] for p in photos[item["prediction_id"]]]
    return {"items": items, "total": total, "limit": limit, "offset": offset, "status": status}


def _answer(session, prediction_id: str) -> list[dict]:
    try:
        return get_prediction(session, prediction_id=prediction_id)["top"][:3]
    except NotFound:
        return []
