"""Approved "not in the list" feedback → the photos of a new class (issue 20, from the review page).

A reviewer approves "not in the list" feedback when the photo really shows something the model does not know.
Such items, with no class named by the user or a reviewer and not merged, are the candidates: `groups` gathers
them by the user's text (normalised as the label rule normalises: NFC, trimmed, inner whitespace collapsed,
case-folded), `photos_for` checks a reviewer's chosen items and returns their kept photos (plain files in the
photo store, one per distinct sha256), and `mark` records on the rows the class they became: approved with
that class id as the reviewer's label. So they leave the candidates, and `snapid data merge-feedback` takes
them like any relabelled item once the dataset has that class (until then it skips them, as any unknown label).
No schema change: status and reviewer_label say it honestly.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from snapid.errors import NotFound, SnapidError
from snapid.feedback.service import normalise
from snapid.feedback.storage import PhotoStore
from snapid.track import feedback as track
from snapid.track.db import transaction

MIN_PHOTOS, MAX_PHOTOS = 5, 20   # `snapid add-class`'s bounds (snapid/export/add_class.py checks them again)
MAX_CANDIDATES = 1000            # items scanned for the groups: the page stays bounded however long the queue
MAX_NAME = 100


class NotEligible(SnapidError):
    code = "feedback_not_eligible"
    status = 409


class PhotoCount(SnapidError):
    code = "photo_count"
    status = 422


def suggested_name(text: str) -> str:
    """The user's text as a class name: whitespace collapsed, cut to MAX_NAME characters."""
    return " ".join(text.split())[:MAX_NAME]


def groups(engine: Engine, *, limit: int = MAX_CANDIDATES) -> list[dict]:
    """The candidates grouped by normalised text, the largest groups first: each with its feedback ids, the
    upload ids of its distinct photos and whether their count is within MIN_PHOTOS..MAX_PHOTOS."""
    with transaction(engine) as s:
        items = track.unlabelled_not_in_list(s, limit=limit)
        uploads = track.uploads_for_predictions(s, prediction_ids=[i["prediction_id"] for i in items])
    by_key: dict[str, dict] = {}
    for item in items:
        key = normalise(item["text"])
        group = by_key.setdefault(key, {"key": key, "name": suggested_name(item["text"]), "feedback_ids": [],
                                        "uploads": [], "shas": set()})
        group["feedback_ids"].append(item["id"])
        for upload in uploads[item["prediction_id"]]:
            if upload["sha256"] not in group["shas"]:  # add-class refuses the same photo twice
                group["shas"].add(upload["sha256"])
                group["uploads"].append(upload["id"])
    out = [{**{k: v for k, v in g.items() if k != "shas"}, "photos": len(g["uploads"]),
            "ready": MIN_PHOTOS <= len(g["uploads"]) <= MAX_PHOTOS} for g in by_key.values()]
    return sorted(out, key=lambda g: (g["key"] == "", -g["photos"], g["key"]))  # no text: last


def _refusals(found: dict[str, dict], ids: list[str]) -> list[str]:
    why = []
    for fid in ids:
        item = found[fid]
        if not item["not_in_list"]:
            why.append(f"{fid} names a class ({item['final_label']!r}), not 'not in the list'")
        elif item["merged_version"] is not None:
            why.append(f"{fid} is already merged into dataset {item['merged_dataset']!r}")
        elif item["status"] != "approved":
            why.append(f"{fid} is {item['status']}, not approved")
        elif item["final_label"]:
            why.append(f"{fid} already became class {item['final_label']!r}")
    return why


def photos_for(engine: Engine, store: PhotoStore, feedback_ids: list[str]) -> list[Path]:
    """The kept photo files of these feedback items (distinct by content), after checking every item is an
    approved, unlabelled "not in the list" one (NotFound, NotEligible naming the ids) and that there are
    MIN_PHOTOS..MAX_PHOTOS photos (PhotoCount saying how many)."""
    ids = list(dict.fromkeys(i.lower() for i in feedback_ids))
    with transaction(engine) as s:
        found = track.get_feedback_many(s, ids=ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"no feedback with id {', '.join(missing)}")
        refused = _refusals(found, ids)
        if refused:
            raise NotEligible("only approved 'not in the list' feedback that no class names can make a class: "
                              + "; ".join(refused))
        uploads = track.uploads_for_predictions(s, prediction_ids=[found[i]["prediction_id"] for i in ids])
    paths: dict[str, Path] = {}
    for upload in (u for rows in uploads.values() for u in rows):
        path = store.photo_path(upload["sha256"])
        if upload["sha256"] not in paths and path.is_file():  # a file the retention sweep took: not counted
            paths[upload["sha256"]] = path
    if not MIN_PHOTOS <= len(paths) <= MAX_PHOTOS:
        raise PhotoCount(f"the {len(ids)} feedback items have {len(paths)} distinct saved photos; a new class needs "
                         f"{MIN_PHOTOS} to {MAX_PHOTOS}")
    return list(paths.values())


def mark(engine: Engine, feedback_ids: list[str], class_id: str) -> list[str]:
    """Record that these items became class ``class_id`` (approved, with it as the reviewer's label); returns the
    ids left as they are because a reviewer rejected, relabelled or merged them meanwhile (their word stands)."""
    ids = list(dict.fromkeys(i.lower() for i in feedback_ids))
    with transaction(engine) as s:
        found = track.get_feedback_many(s, ids=ids)
        skipped = [i for i in ids if i not in found or _refusals(found, [i])]
        for fid in ids:
            if fid not in skipped:
                track.set_review(s, feedback_id=fid, status="approved", reviewer_label=class_id)
    return skipped
