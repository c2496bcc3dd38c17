"""`snapid data import`: read any supported layout into a new, versioned manifest in the database.

Steps: read annotations (a format reader) → refuse paths that leave the root → read every file
once in parallel (sha256, size, statistics; unchanged files reuse the last version's facts) →
check boxes → subsample → split → store everything in ONE transaction.

A stage above both snapid.data (readers, records, splits) and snapid.track (the database it stores
into), so neither package imports the other's way up (issue 18).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from snapid.data import split as splitting
from snapid.data.archive import dataset_root, is_archive, unpack
from snapid.data.facts import image_facts
from snapid.data.manifest import Box, ClassInfo, Entry, ImageFacts, Rejected, Sample
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.files import inside_root
from snapid.data.sources.formats import detect_format, read_source
from snapid.errors import AnnotationError, DatasetError
from snapid.images import DecodeLimits
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction

Progress = Callable[[int, int], None]
BOX_TOLERANCE = 1.0  # px: annotation tools often write x2 == width (+1)


@dataclass
class ImportReport:
    name: str
    version: int
    format: str
    root: str
    images: int
    classes: int
    splits: dict[str, int]
    rejected: dict[str, int]
    reused: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    unchanged: bool = False   # reuse_unchanged found the latest version identical: no new version was made

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _job(args: tuple[str, str, DecodeLimits]) -> ImageFacts | Rejected:
    path, rel, limits = args
    return image_facts(Path(path), rel, limits)


def _inside(root_real: str, rel: str) -> tuple[str | None, Rejected | None]:
    """The real path of ``rel`` if it stays inside the root, every link in it resolved (a linked folder on the
    way as much as a linked file), else a Rejected."""
    real = inside_root(root_real, rel)
    if real is None:
        return None, Rejected(rel, "outside_root", "path or symbolic link leads outside the dataset root")
    return real, None


def _read_all(
    entries: list[Entry], root: Path, previous: dict[str, ImageFacts], limits: DecodeLimits,
    workers: int, progress: Progress | None,
) -> tuple[list[ImageFacts | None], list[Rejected], int]:
    """Facts per entry (None when rejected), the rejected files, and how many were reused."""
    root_real = os.path.realpath(root)
    results: list[ImageFacts | None] = [None] * len(entries)
    rejected: list[Rejected] = []
    jobs, slots, reused = [], [], 0
    for i, entry in enumerate(entries):
        path, refusal = _inside(root_real, entry.path)
        if refusal:
            rejected.append(refusal)
            continue
        known = previous.get(entry.path)
        if known and _unchanged(path, known):
            results[i] = known
            reused += 1
            continue
        jobs.append((path, entry.path, limits))
        slots.append(i)
    if progress:
        progress(0, len(jobs))
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            _collect(pool.map(_job, jobs, chunksize=32), slots, results, rejected, progress, len(jobs))
    else:
        _collect(map(_job, jobs), slots, results, rejected, progress, len(jobs))
    return results, rejected, reused


def _unchanged(path: str, known: ImageFacts) -> bool:
    """Same size and modification time as last import: reuse its sha256 and statistics."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == known.size_bytes and st.st_mtime_ns == known.mtime_ns


def _collect(outcomes, slots, results, rejected, progress, total):
    for n, (slot, outcome) in enumerate(zip(slots, outcomes, strict=True), 1):
        if isinstance(outcome, Rejected):
            rejected.append(outcome)
        else:
            results[slot] = outcome
        if progress and (n % 64 == 0 or n == total):
            progress(n, total)


def _pixel_boxes(entry: Entry, facts: ImageFacts, clip: bool) -> tuple[list[Box], list[str]]:
    """Boxes in pixels, checked against the image; out-of-bounds boxes fail unless ``clip``."""
    w, h = facts.width, facts.height
    boxes, notes = [], []
    for k, b in enumerate(entry.boxes):
        if entry.boxes_normalized:
            if max(b.x1, b.y1, b.x2, b.y2) > 1.0 + 1e-6 or min(b.x1, b.y1, b.x2, b.y2) < -1e-6:
                notes.append(f"box {k}: normalised coordinates outside [0, 1]: "
                             f"{b.x1:.3f},{b.y1:.3f},{b.x2:.3f},{b.y2:.3f}")
            b = Box(b.x1 * w, b.y1 * h, b.x2 * w, b.y2 * h, b.label)
        if b.x2 < b.x1 or b.y2 < b.y1:
            raise AnnotationError(f"{entry.where or entry.path}: box {k} has x2 < x1 or y2 < y1 ({b.x1}, {b.y1}, "
                                  f"{b.x2}, {b.y2})")
        outside = b.x1 < -BOX_TOLERANCE or b.y1 < -BOX_TOLERANCE or b.x2 > w + BOX_TOLERANCE or b.y2 > h + BOX_TOLERANCE
        if outside and not clip:
            raise AnnotationError(
                f"{entry.where or entry.path}: box {k} ({b.x1:g}, {b.y1:g}, {b.x2:g}, {b.y2:g}) lies outside the "
                f"{w}x{h} image; fix the annotation or pass --clip-boxes"
            )
        clipped = Box(min(max(b.x1, 0), w), min(max(b.y1, 0), h), min(max(b.x2, 0), w), min(max(b.y2, 0), h), b.label)
        if outside:
            notes.append(f"box {k} clipped from ({b.x1:g}, {b.y1:g}, {b.x2:g}, {b.y2:g}) to the {w}x{h} image")
        boxes.append(clipped)
    return boxes, notes


def _classes(source: Source, samples: list[Sample], notes: list[str]) -> list[ClassInfo]:
    """The source's classes in its order; labels it did not list are added (sorted as strings)."""
    classes = list(source.classes or [])
    known = {c.id for c in classes}
    seen = {s.label for s in samples if s.label is not None} | {b.label for s in samples for b in s.boxes if b.label}
    extra = sorted(seen - known)
    if extra and classes:
        notes.append(f"{len(extra)} labels not in the class list were added: {', '.join(extra[:5])}")
    return classes + [ClassInfo(id=label, name=label) for label in extra]


def _stratum(entry: Entry) -> str:
    if entry.label is not None:
        return entry.label
    labels = Counter(b.label for b in entry.boxes if b.label)
    return labels.most_common(1)[0][0] if labels else ""


def import_dataset(
    path: Path,
    *,
    name: str,
    engine: Engine,
    fmt: str = "auto",
    options: ReadOptions | None = None,
    seed: int = 0,
    max_per_class: int | None = None,
    clip_boxes: bool = False,
    workers: int = 1,
    limits: DecodeLimits = DecodeLimits(),
    progress: Progress | None = None,
    unpack_to: Path | None = None,
    reuse_unchanged: bool = False,
) -> ImportReport:
    """``unpack_to``: where an archive (.zip, .tar, .tar.gz) given as ``path`` is safely unpacked.
    ``reuse_unchanged``: when the files, labels, boxes and splits are exactly the latest version's,
    make no new version and report that one (``unchanged``)."""
    started = time.perf_counter()
    check_dataset_name(name)
    unpacked_note = ""
    if is_archive(Path(path)):
        if unpack_to is None:
            raise DatasetError(f"{path}: an archive; give unpack_to (the CLI unpacks into the workspace)")
        folder = unpack(Path(path), unpack_to)
        unpacked_note = f"archive {Path(path).name} unpacked into {folder}"
        path = dataset_root(folder)
    chosen = ""
    if fmt == "auto":
        fmt, reason = detect_format(Path(path))
        chosen = f"format {fmt} detected: {reason}"
    source = read_source(Path(path), fmt, options or ReadOptions())
    if not source.entries:
        raise DatasetError(f"{path}: no images found for format {source.format!r}")
    notes = [n for n in (unpacked_note, chosen) if n] + list(source.notes)
    entries = _unique(source.entries, notes)
    with transaction(engine) as session:
        previous = dataset_store.previous_facts(session, name=name)
    facts, rejected, reused = _read_all(entries, source.root, previous, limits, workers, progress)

    kept = [(e, f) for e, f in zip(entries, facts, strict=True) if f is not None]
    if not kept:
        raise DatasetError(f"{path}: every one of the {len(entries)} files was rejected "
                           f"({_reason_summary(rejected)})")
    if max_per_class:
        strata = [_stratum(e) for e, _ in kept]
        chosen = splitting.balanced_subsample(strata, [e.group for e, _ in kept], max_per_class, seed)
        notes.append(f"kept at most {max_per_class} images per class: {len(chosen)} of {len(kept)}")
        kept = [kept[i] for i in chosen]

    strata = [_stratum(e) for e, _ in kept]
    splits, split_notes = splitting.assign_splits([e.split for e, _ in kept], strata, [e.group for e, _ in kept],
                                                  seed=seed)
    notes += split_notes
    samples = []
    for (entry, f), split in zip(kept, splits, strict=True):
        boxes, box_notes = _pixel_boxes(entry, f, clip_boxes)
        samples.append(Sample(entry.path, entry.label, split, boxes, entry.group, f, box_notes))
    classes = _classes(source, samples, notes)
    if rejected and len(rejected) > 0.01 * len(entries):
        notes.append(f"{len(rejected)} of {len(entries)} files rejected (more than 1%): "
                     f"see `snapid data inspect {name}`")

    params = {"format": source.format, "seed": seed, "max_per_class": max_per_class, "clip_boxes": clip_boxes,
              "source": str(Path(path).resolve()), "fingerprint": _fingerprint(source, classes, samples, rejected)}
    with transaction(engine) as session:
        latest = dataset_store.latest_version_params(session, name=name) if reuse_unchanged else None
    if latest is not None and latest[1].get("fingerprint") == params["fingerprint"]:
        return _report(name, latest[0], source, samples, classes, rejected, reused, started, notes, unchanged=True)
    with transaction(engine) as session:
        version = dataset_store.save_dataset_version(
            session, name=name, format=source.format, root=str(source.root.resolve()), classes=classes,
            samples=samples, rejected=rejected, params=params, notes=notes,
        )
    return _report(name, version, source, samples, classes, rejected, reused, started, notes)


def _report(name, version, source, samples, classes, rejected, reused, started, notes, unchanged=False) -> ImportReport:
    return ImportReport(
        name=name, version=version, format=source.format, root=str(source.root.resolve()), images=len(samples),
        classes=len(classes), splits=dict(sorted(Counter(s.split for s in samples).items())),
        rejected=dict(Counter(r.reason for r in rejected)), reused=reused,
        seconds=round(time.perf_counter() - started, 2), notes=notes, unchanged=unchanged,
    )


def _fingerprint(source: Source, classes, samples: list[Sample], rejected: list[Rejected]) -> str:
    """sha256 of everything a version holds, where its files are included: two imports with the same
    fingerprint are the same dataset."""
    digest = hashlib.sha256(json.dumps([source.format, str(source.root.resolve())]).encode())
    for c in classes:
        digest.update(json.dumps([c.id, c.name, c.display_names], sort_keys=True).encode())
    for s in sorted(samples, key=lambda s: s.path):
        digest.update(json.dumps([s.path, s.label, s.split, s.group, s.facts.sha256, s.boxes], sort_keys=True,
                                 default=repr).encode())
    for r in sorted(rejected, key=lambda r: r.path):
        digest.update(json.dumps([r.path, r.reason]).encode())
    return digest.hexdigest()


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_dataset_name(name: str) -> None:
    """Names appear in file names and URLs: letters, digits, '.', '_', '-', at most 64."""
    if not NAME_PATTERN.match(name or ""):
        raise DatasetError(f"dataset name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit")


def _unique(entries: list[Entry], notes: list[str]) -> list[Entry]:
    """One entry per path: a path listed twice keeps its first listing."""
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.path not in seen:
            seen.add(e.path)
            out.append(e)
    if len(out) < len(entries):
        notes.append(f"{len(entries) - len(out)} duplicate listings of the same path ignored")
    return out


def _reason_summary(rejected: list[Rejected]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in Counter(r.reason for r in rejected).most_common())
