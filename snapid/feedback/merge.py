"""`snapid data merge-feedback DATASET`: approved feedback becomes training samples of a new version.

Each approved feedback whose final label is one of the dataset's classes contributes every photo kept
for its prediction. The stored JPEG is hard-linked (copied across file systems) into a folder the
dataset owns, ``<workspace>/datasets/<dataset>-feedback/``, so the retention sweep of uploads can never
take a sample away. Such samples are stored with an absolute path (the version's root stays the
original import's root, and ``root / absolute`` is the absolute path everywhere paths are joined).

New samples always go to the train split: the test split, and with it every comparison of runs on
it (`snapid promote`), stays exactly as imported. A photo already present in the latest version (same
path or same sha256) is not added again, so a second merge with nothing new creates no version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine

from snapid import images
from snapid.data.facts import image_facts
from snapid.data.manifest import Manifest, Rejected, Sample
from snapid.feedback.storage import PhotoStore
from snapid.track import datasets as dataset_store
from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.workspace import Workspace

SPLIT = "train"


def feedback_folder(workspace: Workspace, dataset: str) -> Path:
    return workspace.unpacked / f"{dataset}-feedback"


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` holds ``source``'s bytes when this returns; never a half-copied file."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _candidates(manifest: Manifest, approved: list[dict], photos: dict[str, list[dict]],
                skipped: Counter) -> list[tuple[dict, dict]]:
    """(feedback, upload) pairs worth adding: a known class, a kept photo, not already a sample."""
    classes = {c.id for c in manifest.classes}
    known = {s.facts.sha256 for s in manifest.samples}
    out = []
    for item in approved:
        if item["final_label"] not in classes:
            skipped["label_not_in_dataset"] += 1
            continue
        uploads = photos.get(item["prediction_id"]) or []
        if not uploads:
            skipped["no_photo_kept"] += 1
            continue
        for upload in uploads:
            if upload["sha256"] in known:
                skipped["already_in_dataset"] += 1
                continue
            known.add(upload["sha256"])
            out.append((item, upload))
    return out


def _sample(store: PhotoStore, folder: Path, item: dict, upload: dict,
            limits: images.DecodeLimits) -> Sample | Rejected:
    target = folder / f"{upload['sha256']}.jpg"
    _link_or_copy(store.photo_path(upload["sha256"]), target)
    facts = image_facts(target, str(target), limits)
    if isinstance(facts, Rejected):
        return facts
    return Sample(path=str(target), label=item["final_label"], split=SPLIT, boxes=[],
                  group=f"feedback:{item['prediction_id']}", facts=facts)


def merge_feedback(dataset: str, *, workspace: Workspace, engine: Engine,
                   limits: images.DecodeLimits = images.DEFAULT_LIMITS) -> dict:
    """Add approved feedback photos to ``dataset`` as a new version (train split only). Returns
    {dataset, from_version, version (None when nothing new), added, feedback, skipped}."""
    store = PhotoStore(workspace.uploads, engine)
    folder = feedback_folder(workspace, dataset)
    skipped: Counter = Counter()
    with transaction(engine) as s:  # one transaction: read the latest version, write the next
        manifest = dataset_store.load_manifest(s, name=dataset)
        approved = track.approved_feedback(s, dataset=dataset)  # never another dataset's feedback
        photos = track.uploads_for_predictions(s, prediction_ids=sorted({a["prediction_id"] for a in approved}))
        added: list[Sample] = []
        merged: set[str] = set()
        for item, upload in _candidates(manifest, approved, photos, skipped):
            try:
                outcome = _sample(store, folder, item, upload, limits)
            except FileNotFoundError:  # swept away since the query
                skipped["photo_missing"] += 1
                continue
            if isinstance(outcome, Rejected):
                skipped[outcome.reason] += 1
                continue
            added.append(outcome)
            merged.add(item["id"])
        version = None
        if added:
            note = (f"{len(added)} photos from {len(merged)} approved feedback added to train "
                    f"(from version {manifest.version})")
            version = dataset_store.save_dataset_version(
                s, name=dataset, format=manifest.format, root=manifest.root, classes=manifest.classes,
                samples=manifest.samples + added, rejected=manifest.rejected,
                params={**manifest.params, "merged_feedback": len(merged), "from_version": manifest.version},
                notes=manifest.notes + [note])
            track.mark_merged(s, ids=sorted(merged), dataset=dataset, version=version)
    return {"dataset": dataset, "from_version": manifest.version, "version": version, "added": len(added),
            "feedback": len(merged), "skipped": dict(skipped), "folder": str(folder)}
