"""What the dashboard shows about runs: plain dicts built from snapid.track.queries and the run folders.

Nothing here renders HTML: the pages are static shells whose scripts fetch these dicts as JSON and put
every string in the DOM as text, so a run name or label can never become markup.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from snapid.errors import InvalidRequest, NotFound, SnapidError
from snapid.track import queries
from snapid.track.db import transaction
from snapid.track.runs import EPOCH_FIELDS, run_dict
from snapid.track.tables import ArtifactRow, EpochRow, RunRow

LIST_KEYS = ("name", "dataset", "dataset_version", "model", "kind", "parent", "status", "monitor", "best_metric",
             "best_epoch", "created_at", "started_at", "ended_at", "seconds")
DETAIL_KEYS = LIST_KEYS + ("host", "error", "config", "summary")
MAX_EVAL_BYTES = 32 * 1024 * 1024   # an eval JSON is bounded by its writer; this guards against a stray file
MAX_META_KEYS = 40                  # headline numbers per artifact, not whole blobs
MAX_COMPARE = 12
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
THUMBNAIL_PREFIXES = ("data:image/jpeg;base64,", "data:image/png;base64,", "data:image/webp;base64,")


def finite(value):
    """NaN and infinities are not JSON: every number leaving the API is finite or null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def as_utc(moment: datetime | None, *, field: str) -> datetime | None:
    """A naive datetime means UTC; an aware one is converted. Out-of-range offsets are the client's mistake."""
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidRequest(f"{field}={moment.isoformat()} is outside the supported date range") from None


def _summary(row: RunRow, progress: dict[int, tuple[int, int]], evals: dict[int, dict]) -> dict:
    data = run_dict(row)
    count, last = progress.get(row.id, (0, None))
    out = {"id": row.id, **{k: data[k] for k in LIST_KEYS}, "epochs": count, "last_epoch": last}
    test = evals.get(row.id, {})
    out["test_top1"], out["test_macro_f1"] = test.get("top1"), test.get("macro_f1")
    return finite(out)


def _summaries(session, rows: list[RunRow]) -> list[dict]:
    ids = [row.id for row in rows]
    progress = queries.epoch_progress(session, run_ids=ids)
    evals = {a.run_id: a.meta or {} for a in queries.run_artifacts(session, run_ids=ids, kinds=("eval_test",))}
    return [_summary(row, progress, evals) for row in rows]


def list_runs(engine: Engine, *, where: queries.RunFilter, sort: str, descending: bool, limit: int,
              offset: int) -> dict:
    """One page of the runs list, the total, and the filter choices."""
    queries.ensure_indexes(engine)
    with transaction(engine) as session:
        rows, total = queries.page_runs(session, where=where, sort=sort, descending=descending,
                                        limit=limit, offset=offset)
        items = _summaries(session, rows)
        facets = queries.run_facets(session)
    next_offset = offset + len(items) if offset + len(items) < total else None
    return {"total": total, "offset": offset, "limit": limit, "next_offset": next_offset, "items": items,
            "facets": facets}


def _found(session, ref: str) -> RunRow:
    row = queries.find_run(session, ref=ref)
    if row is None:
        raise NotFound(f"no run {ref!r} (a run name, or its numeric id); `snapid runs list` shows the runs")
    return row


def _headline(meta: dict) -> dict:
    """The scalar entries of an artifact's meta: its headline numbers, without nested blobs."""
    scalars = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return dict(list(scalars.items())[:MAX_META_KEYS])


def _artifact(row: ArtifactRow) -> dict:
    created = row.created_at.isoformat() if row.created_at else None
    return {"kind": row.kind, "sha256": row.sha256, "created_at": created, "metrics": _headline(row.meta or {})}


def _clean_mistakes(result: dict) -> None:
    """Thumbnails become <img src>: keep only image data URIs, never a URL that could fetch or run anything."""
    for mistake in result.get("mistakes") or []:
        if isinstance(mistake, dict) and not str(mistake.get("thumbnail", "")).startswith(THUMBNAIL_PREFIXES):
            mistake["thumbnail"] = None


def read_eval(run_dir: str, split: str) -> dict | None:
    """``<run_dir>/eval-<split>.json`` (written by `snapid eval`), or None when the run has none."""
    if not run_dir or not SPLIT_NAME.fullmatch(split):
        return None
    path = Path(run_dir) / f"eval-{split}.json"
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_EVAL_BYTES:
            return {"error": f"{path} is larger than {MAX_EVAL_BYTES} bytes; not shown"}
        result = json.loads(path.read_bytes(), parse_constant=lambda _: None)
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {path}: {exc}"}
    if not isinstance(result, dict):
        return {"error": f"{path} does not hold a JSON object"}
    _clean_mistakes(result)
    return finite(result)


def _evaluations(row: RunRow, artifacts: list[ArtifactRow]) -> dict[str, dict]:
    splits = {a.kind.removeprefix("eval_") for a in artifacts if a.kind.startswith("eval_")}
    found = {split: read_eval(row.run_dir, split) for split in sorted(splits | {"val", "test"})}
    return {split: result for split, result in found.items() if result is not None}


def run_detail(engine: Engine, ref: str) -> dict:
    """Everything the run page shows: configuration, summary, artifacts, calibration, evaluations."""
    with transaction(engine) as session:
        row = _found(session, ref)
        data = run_dict(row)
        artifacts = queries.run_artifacts(session, run_ids=[row.id])
        progress = queries.epoch_progress(session, run_ids=[row.id])
    count, last = progress.get(row.id, (0, None))
    calibration = next((a.meta for a in artifacts if a.kind == "calibration"), None)
    detail = {"id": row.id, **{k: data[k] for k in DETAIL_KEYS}, "epochs": count, "last_epoch": last,
              "heartbeat_at": row.heartbeat_at.isoformat() if row.heartbeat_at else None,
              "artifacts": [_artifact(a) for a in artifacts], "calibration": calibration,
              "evaluations": _evaluations(row, artifacts)}
    return finite(detail)


def _epoch(row: EpochRow) -> dict:
    return {"epoch": row.epoch, "phase": row.phase, **{k: getattr(row, k) for k in EPOCH_FIELDS},
            "created_at": row.created_at.isoformat() if row.created_at else None}


def run_epochs(engine: Engine, ref: str, *, after: int, limit: int) -> dict:
    """Epochs numbered above ``after`` (at most ``limit``), with the run's status so a poller knows when to stop."""
    with transaction(engine) as session:
        row = _found(session, ref)
        rows = queries.epochs_after(session, run_id=row.id, after=after, limit=limit + 1)
        status, best_metric, best_epoch = row.status, row.best_metric, row.best_epoch
        name, run_id = row.name, row.id
    epochs = [_epoch(r) for r in rows[:limit]]
    return finite({"id": run_id, "name": name, "status": status, "best_metric": best_metric,
                   "best_epoch": best_epoch, "epochs": epochs, "more": len(rows) > limit})


def _board_row(row: dict) -> dict:
    """A leaderboard row for the page: flat scalar columns, without server paths."""
    flat = {k: v for k, v in row.items() if k not in ("preds", "vs_best", "evaluated")}
    versus = row.get("vs_best") or {}
    flat.update({k: versus.get(k) for k in ("diff", "low", "high", "p_value", "verdict")})
    return flat


def _leaderboard(dataset: str, names: list[str], engine: Engine) -> dict | None:
    """The leaderboard of the compared runs (snapid.evaluate.leaderboard, no torch); None where it is not installed."""
    try:
        from snapid.evaluate.leaderboard import leaderboard
    except ImportError:
        return None
    try:
        board = leaderboard(dataset, engine=engine, names=names)
    except SnapidError as exc:
        return {"dataset": dataset, "error": exc.message}
    return finite({**board, "rows": [_board_row(r) for r in board.get("rows", [])]})


def compare_runs(engine: Engine, names: list[str]) -> dict:
    """Several runs side by side: their summaries (curves are fetched per run) and each dataset's leaderboard."""
    names = list(dict.fromkeys(n for n in names if n))[:MAX_COMPARE]  # none left: an empty comparison
    with transaction(engine) as session:
        items = _summaries(session, queries.find_runs_by_name(session, names=names))
    found = {item["name"] for item in items}
    datasets = list(dict.fromkeys(item["dataset"] for item in items))
    boards = [b for b in (_leaderboard(d, names, engine) for d in datasets[:3]) if b is not None]
    return {"runs": items, "missing": [n for n in names if n not in found], "leaderboards": boards}
