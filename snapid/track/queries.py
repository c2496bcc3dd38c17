"""Read-only queries behind the dashboard: filtered, sorted, paged run lists and incremental epochs.

Every query here is served by an index (see RunRow / EpochRow in tables.py), so a list page or a
live-polling request stays fast with thousands of runs and hundreds of thousands of epoch rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from snapid.track.tables import ArtifactRow, EpochRow, RunRow

SORT_KEYS = ("created_at", "started_at", "name", "dataset", "model", "kind", "status", "best_metric", "duration")
MAX_ID_DIGITS = 18  # a longer all-digit reference cannot be a row id (and would overflow a 64-bit bind)


@dataclass(frozen=True)
class RunFilter:
    """Equality filters (None = any) and a created_at window: since inclusive, until exclusive, both UTC."""

    dataset: str | None = None
    model: str | None = None
    status: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        pairs = ((RunRow.dataset, self.dataset), (RunRow.model, self.model),
                 (RunRow.status, self.status), (RunRow.kind, self.kind))
        where = [column == value for column, value in pairs if value is not None]
        if self.since is not None:
            where.append(RunRow.created_at >= self.since)
        if self.until is not None:
            where.append(RunRow.created_at < self.until)
        return where


@lru_cache(maxsize=8)
def ensure_indexes(engine: Engine) -> None:
    """create_all() only builds indexes with new tables: add the dashboard's to an older database once."""
    for table in (RunRow.__table__, EpochRow.__table__):
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def find_run(session: Session, *, ref: str) -> RunRow | None:
    """A run by reference: an all-digit reference is the numeric id, anything else the name."""
    if ref.isascii() and ref.isdigit() and len(ref) <= MAX_ID_DIGITS:
        return session.get(RunRow, int(ref))
    return session.scalar(select(RunRow).where(RunRow.name == ref))


def find_runs_by_name(session: Session, *, names: list[str]) -> list[RunRow]:
    rows = session.scalars(select(RunRow).where(RunRow.name.in_(names))).all()
    order = {name: i for i, name in enumerate(names)}
    return sorted(rows, key=lambda row: order[row.name])


def _duration(dialect: str) -> ColumnElement:
    """Seconds from start to end (or to now while running); each database spells date arithmetic its own way."""
    end = func.coalesce(RunRow.ended_at, func.current_timestamp())
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(RunRow.started_at)) * 86400.0
    return func.extract("epoch", end - RunRow.started_at)


def _sort_column(key: str, dialect: str) -> ColumnElement:
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}; one of {', '.join(SORT_KEYS)}")
    return _duration(dialect) if key == "duration" else getattr(RunRow, key)


def page_runs(session: Session, *, where: RunFilter, sort: str = "created_at", descending: bool = True,
              limit: int = 50, offset: int = 0) -> tuple[list[RunRow], int]:
    """One page of runs matching ``where``, and how many match in all. NULLs sort last either way."""
    conditions = where.conditions()
    total = session.scalar(select(func.count(RunRow.id)).where(*conditions)) or 0
    column = _sort_column(sort, session.get_bind().dialect.name)
    direction = column.desc() if descending else column.asc()
    tiebreak = RunRow.id.desc() if descending else RunRow.id.asc()
    query = (select(RunRow).where(*conditions).order_by(direction.nulls_last(), tiebreak)
             .limit(limit).offset(offset))
    return list(session.scalars(query)), total


def epoch_progress(session: Session, *, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """run id -> (number of epoch rows, last epoch), read from the (run_id, epoch) index only."""
    if not run_ids:
        return {}
    query = (select(EpochRow.run_id, func.count(EpochRow.id), func.max(EpochRow.epoch))
             .where(EpochRow.run_id.in_(run_ids)).group_by(EpochRow.run_id))
    return {run_id: (count, last) for run_id, count, last in session.execute(query)}


def epochs_after(session: Session, *, run_id: int, after: int, limit: int) -> list[EpochRow]:
    """Epochs of one run numbered above ``after``, in order: what a live chart has not drawn yet."""
    query = (select(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch > after)
             .order_by(EpochRow.epoch).limit(limit))
    return list(session.scalars(query))


def run_artifacts(session: Session, *, run_ids: list[int], kinds: tuple[str, ...] | None = None) -> list[ArtifactRow]:
    if not run_ids:
        return []
    query = select(ArtifactRow).where(ArtifactRow.run_id.in_(run_ids))
    if kinds is not None:
        query = query.where(ArtifactRow.kind.in_(kinds))
    return list(session.scalars(query.order_by(ArtifactRow.run_id, ArtifactRow.kind)))


def run_facets(session: Session, *, limit: int = 500) -> dict[str, list[str]]:
    """The distinct datasets, models, kinds and statuses present: the choices of the list filters."""
    facets = {}
    for key, column in (("datasets", RunRow.dataset), ("models", RunRow.model), ("kinds", RunRow.kind),
                        ("statuses", RunRow.status)):
        facets[key] = list(session.scalars(select(column).distinct().order_by(column).limit(limit)))
    return facets
