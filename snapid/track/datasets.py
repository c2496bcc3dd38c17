"""Keyword-only data access. Returns plain records (snapid.data.manifest), never ORM objects."""

from __future__ import annotations

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from snapid.data.manifest import Box, ClassInfo, ImageFacts, Manifest, Rejected, Sample
from snapid.errors import NotFound
from snapid.track.tables import ClassRow, DatasetRow, DatasetVersionRow, RejectedRow, SampleRow

_BATCH = 5000


def save_dataset_version(
    session: Session,
    *,
    name: str,
    format: str,
    root: str,
    classes: list[ClassInfo],
    samples: list[Sample],
    rejected: list[Rejected],
    params: dict,
    notes: list[str],
) -> int:
    """Store a new version of dataset ``name``; returns its version number. Caller owns the transaction."""
    dataset = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if dataset is None:
        dataset = DatasetRow(name=name)
        session.add(dataset)
        session.flush()
    last = session.scalar(select(func.max(DatasetVersionRow.version)).where(DatasetVersionRow.dataset_id == dataset.id))
    row = DatasetVersionRow(
        dataset_id=dataset.id, version=(last or 0) + 1, format=format, root=root, params=params,
        notes=notes, n_samples=len(samples), n_rejected=len(rejected),
    )
    session.add(row)
    session.flush()
    if classes:
        session.execute(insert(ClassRow), [
            {"version_id": row.id, "position": i, "class_id": c.id, "name": c.name, "display_names": c.display_names}
            for i, c in enumerate(classes)
        ])
    for start in range(0, len(samples), _BATCH):
        session.execute(insert(SampleRow), [_sample_row(row.id, s) for s in samples[start:start + _BATCH]])
    if rejected:
        session.execute(insert(RejectedRow), [
            {"version_id": row.id, "path": r.path, "reason": r.reason, "detail": r.detail} for r in rejected
        ])
    return row.version


def _sample_row(version_id: int, s: Sample) -> dict:
    f = s.facts
    return {
        "version_id": version_id, "path": s.path, "label": s.label, "split": s.split, "group_id": s.group,
        "boxes": [b.as_list() for b in s.boxes], "box_notes": s.box_notes,
        "sha256": f.sha256, "size_bytes": f.size_bytes, "mtime_ns": f.mtime_ns, "width": f.width,
        "height": f.height, "format": f.format, "mode": f.mode, "phash": f.phash,
        "mean_rgb": f.mean_rgb, "hist": f.hist,
    }


def _facts(row) -> ImageFacts:
    """From a SampleRow or a plain row of its columns (same attribute names)."""
    return ImageFacts(
        sha256=row.sha256, size_bytes=row.size_bytes, mtime_ns=row.mtime_ns, width=row.width, height=row.height,
        format=row.format, mode=row.mode, phash=row.phash, mean_rgb=list(row.mean_rgb), hist=list(row.hist),
    )


def _version_row(session: Session, name: str, version: int | None) -> DatasetVersionRow:
    dataset = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if dataset is None:
        known = session.scalars(select(DatasetRow.name).order_by(DatasetRow.name)).all()
        hint = f"; known datasets: {', '.join(known)}" if known else "; import one with `snapid data import`"
        raise NotFound(f"no dataset named {name!r}{hint}")
    query = select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
    if version is None:
        query = query.order_by(DatasetVersionRow.version.desc()).limit(1)
    else:
        query = query.where(DatasetVersionRow.version == version)
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"dataset {name!r} has no version {version}")
    return row


def latest_version_params(session: Session, *, name: str) -> tuple[int, dict] | None:
    """(version, import parameters) of the latest version of ``name``; None when there is no such dataset."""
    dataset = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if dataset is None:
        return None
    row = session.scalar(select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
                         .order_by(DatasetVersionRow.version.desc()).limit(1))
    return (row.version, dict(row.params or {})) if row is not None else None


def load_manifest_version(session: Session, *, name: str) -> int:
    """The latest version number of dataset ``name``."""
    return _version_row(session, name, None).version


def load_manifest(session: Session, *, name: str, version: int | None = None) -> Manifest:
    """The whole manifest of one version (the latest when ``version`` is None)."""
    row = _version_row(session, name, version)
    classes = [
        ClassInfo(id=c.class_id, name=c.name, display_names=dict(c.display_names or {}))
        for c in session.scalars(select(ClassRow).where(ClassRow.version_id == row.id).order_by(ClassRow.position))
    ]
    samples = [
        Sample(path=s.path, label=s.label, split=s.split, boxes=[Box.from_list(b) for b in s.boxes],
               group=s.group_id, facts=_facts(s), box_notes=list(s.box_notes or []))
        for s in session.scalars(select(SampleRow).where(SampleRow.version_id == row.id).order_by(SampleRow.id))
    ]
    rejected = [
        Rejected(path=r.path, reason=r.reason, detail=r.detail)
        for r in session.scalars(select(RejectedRow).where(RejectedRow.version_id == row.id).order_by(RejectedRow.id))
    ]
    return Manifest(
        name=name, version=row.version, format=row.format, root=row.root, classes=classes, samples=samples,
        rejected=rejected, params=dict(row.params or {}), notes=list(row.notes or []),
        created_at=row.created_at.isoformat() if row.created_at else "",
    )


def previous_facts(session: Session, *, name: str) -> dict[str, ImageFacts]:
    """path → facts from the latest version of ``name``, so an unchanged file is not read again."""
    dataset_id = session.scalar(select(DatasetRow.id).where(DatasetRow.name == name))
    if dataset_id is None:
        return {}
    version_id = session.scalar(
        select(DatasetVersionRow.id).where(DatasetVersionRow.dataset_id == dataset_id)
        .order_by(DatasetVersionRow.version.desc()).limit(1)
    )
    columns = (SampleRow.path, SampleRow.sha256, SampleRow.size_bytes, SampleRow.mtime_ns, SampleRow.width,
               SampleRow.height, SampleRow.format, SampleRow.mode, SampleRow.phash, SampleRow.mean_rgb, SampleRow.hist)
    rows = session.execute(select(*columns).where(SampleRow.version_id == version_id))  # plain rows: no ORM objects
    return {r.path: _facts(r) for r in rows}


def split_counts(session: Session, *, name: str, version: int | None = None) -> dict[str, int]:
    """Photos per split of one version (the latest when ``version`` is None)."""
    row = _version_row(session, name, version)
    counts = session.execute(select(SampleRow.split, func.count()).where(SampleRow.version_id == row.id)
                             .group_by(SampleRow.split))
    return {split: n for split, n in counts}


def list_datasets(session: Session) -> list[dict]:
    """One line per dataset: its latest version and counts."""
    out = []
    for dataset in session.scalars(select(DatasetRow).order_by(DatasetRow.name)):
        row = _version_row(session, dataset.name, None)
        out.append({
            "name": dataset.name, "version": row.version, "format": row.format, "root": row.root,
            "samples": row.n_samples, "rejected": row.n_rejected,
            "created_at": row.created_at.isoformat() if row.created_at else "",
        })
    return out
