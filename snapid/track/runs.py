"""Keyword-only access to runs, epochs and artifacts. Every write is small and its own transaction,
so a dashboard sees a run live and two trainings can share one database."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from snapid.errors import NotFound, SnapidError
from snapid.track.tables import ArtifactRow, EpochRow, RunRow, utcnow

STATUSES = ("queued", "running", "completed", "failed", "stopped")
EPOCH_FIELDS = ("train_loss", "val_loss", "top1", "top5", "macro_f1", "lr", "seconds", "images_per_s")
STALE_AFTER = timedelta(hours=1)  # a run on another host with no heartbeat for this long is dead


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _clean(value):
    """NaN/inf are not JSON and not portable across databases: store them as NULL."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_dict(row: RunRow) -> dict:
    ended = row.ended_at or (utcnow() if row.status == "running" else None)
    started = row.started_at
    if started and ended and started.tzinfo is None:
        ended = ended.replace(tzinfo=None)
    return {
        "name": row.name, "dataset": row.dataset, "dataset_version": row.dataset_version, "model": row.model,
        "kind": row.kind, "parent": row.parent, "status": row.status, "host": row.host, "pid": row.pid,
        "run_dir": row.run_dir, "monitor": row.monitor, "best_metric": row.best_metric, "best_epoch": row.best_epoch,
        "summary": row.summary or {}, "error": row.error, "config": row.config or {},
        "created_at": _iso(row.created_at), "started_at": _iso(started), "ended_at": _iso(row.ended_at),
        "seconds": round((ended - started).total_seconds(), 1) if started and ended else None,
    }


def _row(session: Session, name: str) -> RunRow:
    row = session.scalar(select(RunRow).where(RunRow.name == name))
    if row is None:
        raise NotFound(f"no run named {name!r}; `snapid runs list` shows the runs")
    return row


def unique_name(session: Session, base: str) -> str:
    taken = set(session.scalars(select(RunRow.name).where(RunRow.name.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def create_run(session: Session, *, name: str, dataset: str, dataset_version: int, model: str, config: dict,
               run_dir: str, monitor: str, kind: str = "train", parent: str | None = None) -> dict:
    if session.scalar(select(RunRow.id).where(RunRow.name == name)) is not None:
        raise SnapidError(f"a run named {name!r} already exists: pick another --name, or --resume {name}",
                          code="run_exists", status=409)
    row = RunRow(name=name, dataset=dataset, dataset_version=dataset_version, model=model, config=config,
                 run_dir=run_dir, monitor=monitor, kind=kind, parent=parent, status="queued")
    session.add(row)
    session.flush()
    return run_dict(row)


def start_run(session: Session, *, name: str, host: str, pid: int) -> None:
    row = _row(session, name)
    now = utcnow()
    row.status, row.host, row.pid, row.heartbeat_at, row.error, row.ended_at = "running", host, pid, now, "", None
    row.started_at = row.started_at or now


def record_epoch(session: Session, *, name: str, epoch: int, phase: str, metrics: dict, is_best: bool,
                 best_value: float | None) -> None:
    """Write one epoch (replacing it if a resumed run writes the same epoch again); heartbeat; best so far."""
    row = _row(session, name)
    session.execute(delete(EpochRow).where(EpochRow.run_id == row.id, EpochRow.epoch == epoch))
    session.add(EpochRow(run_id=row.id, epoch=epoch, phase=phase, **{k: _clean(metrics.get(k)) for k in EPOCH_FIELDS}))
    row.heartbeat_at = utcnow()
    if is_best:
        row.best_metric, row.best_epoch = _clean(best_value), epoch


def finish_run(session: Session, *, name: str, status: str, summary: dict | None = None, error: str = "") -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    row = _row(session, name)
    row.status, row.ended_at, row.error = status, utcnow(), error[:4000]
    if summary is not None:
        row.summary = {k: _clean(v) for k, v in summary.items()}


def set_config(session: Session, *, name: str, config: dict) -> None:
    """Replace a run's saved config (e.g. a resumed run given a new epoch budget)."""
    _row(session, name).config = dict(config)


def record_artifact(session: Session, *, name: str, kind: str, path: str, sha256: str = "",
                    meta: dict | None = None) -> None:
    row = _row(session, name)
    session.execute(delete(ArtifactRow).where(ArtifactRow.run_id == row.id, ArtifactRow.kind == kind))
    session.add(ArtifactRow(run_id=row.id, kind=kind, path=path, sha256=sha256, meta=meta or {}))


def get_run(session: Session, *, name: str) -> dict:
    return run_dict(_row(session, name))


def list_runs(session: Session, *, dataset: str | None = None, model: str | None = None, status: str | None = None,
              parent: str | None = None) -> list[dict]:
    query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc())
    for column, value in ((RunRow.dataset, dataset), (RunRow.model, model), (RunRow.status, status),
                          (RunRow.parent, parent)):
        if value is not None:
            query = query.where(column == value)
    return [run_dict(r) for r in session.scalars(query)]


def epochs(session: Session, *, name: str) -> list[dict]:
    run = _row(session, name)
    rows = session.scalars(select(EpochRow).where(EpochRow.run_id == run.id).order_by(EpochRow.epoch))
    return [{"epoch": r.epoch, "phase": r.phase, **{k: getattr(r, k) for k in EPOCH_FIELDS}} for r in rows]


def artifacts(session: Session, *, name: str) -> list[dict]:
    run = _row(session, name)
    rows = session.scalars(select(ArtifactRow).where(ArtifactRow.run_id == run.id).order_by(ArtifactRow.kind))
    return [{"kind": r.kind, "path": r.path, "sha256": r.sha256, "meta": r.meta or {}} for r in rows]


def reap_stale_runs(session: Session, *, host: str, is_alive: Callable[[int], bool]) -> list[str]:
    """Runs left 'running' by a killed process become 'failed' (resumable), never running forever."""
    reaped = []
    now = utcnow()
    for row in session.scalars(select(RunRow).where(RunRow.status == "running")):
        beat = row.heartbeat_at
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        dead_here = row.host == host and (row.pid is None or not is_alive(row.pid))
        silent_elsewhere = row.host != host and beat is not None and now - beat > STALE_AFTER
        if dead_here or silent_elsewhere:
            row.status, row.ended_at = "failed", now
            row.error = ("the training process stopped without finishing (killed?); "
                         f"continue it with `snapid train --resume {row.name}`")
            reaped.append(row.name)
    return reaped
