"""The leaderboard: every finished run and ensemble of one dataset version, ranked on one split, and
whether each one's gap to the best is real (a paired bootstrap over the same test items).

"98.5 vs 98.9" on 500 test images is 2 images: the confidence interval of the paired difference says
whether such a gap would survive a different draw of test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from snapid.errors import SnapidError
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction

MAX_ROUNDS = 100_000
HEADLINE = ("top1", "top5", "macro_f1", "balanced_accuracy", "ece", "parameters", "latency_ms", "n", "tta")


class ComparisonError(SnapidError):
    code = "not_comparable"
    status = 422


def paired_bootstrap(correct_a, correct_b, *, rounds: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Accuracy of A minus accuracy of B on the same items, with a percentile bootstrap interval.

    Items are resampled in pairs. The difference per item is +1, 0 or -1, so one resample of n items is
    exactly a multinomial draw of how many +1 and -1 it holds: O(rounds) work and memory whatever n is.
    ``p_value`` is the two-sided bootstrap p-value (twice the smaller tail beyond 0, between 1/rounds and 1).
    """
    a, b = _as_correct(correct_a, "correct_a"), _as_correct(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ComparisonError(f"the two runs were scored on different items ({a.size} vs {b.size}); "
                              "a paired comparison needs the same test items")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise ComparisonError(f"rounds must be between 1 and {MAX_ROUNDS}, got {rounds}")
    n = a.size
    if n == 0:
        raise ComparisonError("no items to compare: the split is empty")
    gains, losses = int(np.sum(a & ~b)), int(np.sum(~a & b))
    draws = np.random.default_rng(seed).multinomial(n, [gains / n, losses / n, 1 - (gains + losses) / n], size=rounds)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2
    # a bootstrap cannot resolve p below 1/rounds: report that bound, never a misleading 0
    p_value = min(1.0, max(1 / rounds, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0)))))
    return {"diff": (gains - losses) / n, "low": float(np.quantile(diffs, tail)),
            "high": float(np.quantile(diffs, 1 - tail)), "p_value": p_value, "level": level, "n": n, "rounds": rounds,
            "a_only": gains, "b_only": losses}


def _as_correct(values, what: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ComparisonError(f"{what} must hold only 0/1 or True/False per item")
        arr = arr.astype(bool)
    return arr


def verdict(result: dict) -> str:
    if result["low"] <= 0 <= result["high"]:
        return "not significant"
    return "significantly better" if result["diff"] > 0 else "significantly worse"


# --- the board ------------------------------------------------------------------------------------------------
def leaderboard(dataset: str, *, engine: Engine, split: str = "test", version: int | None = None,
                names: list[str] | None = None, rounds: int = 2000) -> dict:
    """Runs and ensembles of ``dataset`` (latest version by default) ranked by top-1 on ``split``;
    ``names`` keeps only those runs (a comparison)."""
    with transaction(engine) as s:
        version = version or dataset_store.load_manifest_version(s, name=dataset)
        runs = [r for r in track.list_runs(s, dataset=dataset, status="completed")
                if r["dataset_version"] == version and (names is None or r["name"] in names)]
        found = {r["name"]: _eval_artifact(track.artifacts(s, name=r["name"]), split) for r in runs}
    rows = [_row(run, found[run["name"]], split) for run in runs]
    evaluated = sorted((r for r in rows if r["evaluated"]), key=lambda r: (-(r["top1"] or 0), r["name"]))
    pending = sorted((r for r in rows if not r["evaluated"]), key=lambda r: r["name"])
    for rank, row in enumerate(evaluated, 1):
        row["rank"] = rank
    if evaluated:
        _compare_to_best(evaluated, rounds=rounds)
    return {"dataset": dataset, "version": version, "split": split, "best": evaluated[0]["name"] if evaluated else None,
            "rows": evaluated + pending}


def _eval_artifact(artifacts: list[dict], split: str) -> dict | None:
    return next((a for a in artifacts if a["kind"] == f"eval_{split}"), None)


def _row(run: dict, artifact: dict | None, split: str) -> dict:
    row = {"name": run["name"], "kind": run["kind"], "model": run["model"], "rank": None,
           "evaluated": artifact is not None}
    if artifact is None:
        row.update({k: None for k in HEADLINE})
        row["note"] = f"not evaluated — run `snapid eval {run['name']}`"
        return row
    meta = artifact["meta"] or {}
    row.update({k: meta.get(k) for k in HEADLINE})
    row["parameters"] = row["parameters"] or run["summary"].get("parameters")
    row["preds"] = str(Path(run["run_dir"]) / f"eval-{split}-preds.npz")
    row["note"] = ""
    return row


def _compare_to_best(rows: list[dict], *, rounds: int) -> None:
    """Each row's difference against the best row, with its interval and verdict (written into the row)."""
    best = rows[0]
    best_items = _load_preds(best["preds"])
    best["vs_best"] = None
    for row in rows[1:]:
        row["vs_best"] = None
        if best_items is None:
            row["note"] = f"cannot compare: the predictions of {best['name']!r} are missing; evaluate it again"
            continue
        items = _load_preds(row["preds"])
        if items is None:
            row["note"] = f"cannot compare: {row['preds']} is missing; run `snapid eval {row['name']}` again"
            continue
        if items["labels"].shape != best_items["labels"].shape \
                or not np.array_equal(items["labels"], best_items["labels"]):
            row["note"] = f"not comparable with {best['name']!r}: evaluated on different items"
            continue
        result = paired_bootstrap(items["correct"], best_items["correct"], rounds=rounds)
        row["vs_best"] = {**result, "verdict": verdict(result)}


def _load_preds(path: str) -> dict | None:
    """labels and correct from an -preds.npz file (no pickles), or None when the file is gone or broken."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"labels": np.asarray(data["labels"]), "correct": np.asarray(data["correct"]).astype(bool)}
    except (OSError, KeyError, ValueError):
        return None


def board_table(board: dict) -> list[list]:
    """The board as rows of display values, for the CLI and the report."""
    out = []
    for r in board["rows"]:
        vs = r.get("vs_best")
        if r["rank"] == 1:
            gap = "best"
        else:
            gap = f"{vs['diff']:+.2%} [{vs['low']:+.2%}, {vs['high']:+.2%}] {vs['verdict']}" if vs else r["note"]
        out.append([r["rank"] or "-", r["name"], r["kind"], r["model"], _pct(r["top1"]), _pct(r["macro_f1"]),
                    _num(r["ece"], 4), _params(r["parameters"]), _num(r["latency_ms"], 2), gap])
    return out


BOARD_HEADERS = ["#", "run", "kind", "model", "top-1", "macro-F1", "ECE", "parameters", "latency ms",
                 "vs best (95% CI)"]


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _params(value) -> str:
    if not value:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value:,}"
