"""`snapid promote CANDIDATE --over CURRENT`: champion/challenger on the dataset's fixed test split.

Both runs (or ensembles) must belong to the same dataset and be scored on the same test photos: the
candidate may come from a newer version (made by `merge-feedback`, which never touches test), but the
sha256 set of the test split must be identical, or the comparison is refused. Both are evaluated
afresh (`evaluate_run`), and the candidate is promoted only when its top-1 beats the current run's by
at least ``margin``. A paired bootstrap of the difference is reported with the decision.

Promotion exports the candidate into ``<workspace>/bundles/<dataset>-promoted``. `write_bundle` builds
the folder beside it and swaps it in with two renames, so a server started on that folder
(`snapid serve <workspace>/bundles/<dataset>-promoted`) sees the old bundle or the new one, never a mix,
and its reloader picks the new one up without a restart. Every decision, refused ones included, is a
row in the `promotions` table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from snapid.errors import SnapidError
from snapid.track import datasets as dataset_store
from snapid.track import feedback as track
from snapid.track import runs as runs_db
from snapid.track.db import transaction
from snapid.workspace import Workspace

DEFAULT_MARGIN = 0.005
BOOTSTRAP_ROUNDS = 2000


class NotComparable(SnapidError):
    code = "not_comparable"
    status = 422


def promoted_bundle_path(workspace: Workspace, dataset: str) -> Path:
    """The folder a server should watch to always serve the promoted model of ``dataset``."""
    return workspace.bundles / f"{dataset}-promoted"


def split_shas(engine: Engine, *, dataset: str, version: int, split: str) -> list[str]:
    """sha256 of the split's photos in manifest order (the order the prepared cache scores them)."""
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=dataset, version=version)
    return [sample.facts.sha256 for sample in manifest.samples if sample.split == split]


def _comparable_runs(engine: Engine, candidate: str, current: str,
                     split: str) -> tuple[dict, dict, list[str], list[str]]:
    if candidate == current:
        raise NotComparable(f"candidate and current are the same run ({candidate!r})")
    with transaction(engine) as s:
        runs = {name: runs_db.get_run(s, name=name) for name in (candidate, current)}
    for name, run in runs.items():
        if run["status"] != "completed":
            raise NotComparable(f"run {name!r} is {run['status']}, not completed; only finished runs can be compared")
    cand, cur = runs[candidate], runs[current]
    if cand["dataset"] != cur["dataset"]:
        raise NotComparable(f"{candidate!r} was trained on dataset {cand['dataset']!r} and {current!r} on "
                            f"{cur['dataset']!r}; promotion compares runs of one dataset")
    shas_cand = split_shas(engine, dataset=cand["dataset"], version=cand["dataset_version"], split=split)
    shas_cur = split_shas(engine, dataset=cur["dataset"], version=cur["dataset_version"], split=split)
    if set(shas_cand) != set(shas_cur):
        raise NotComparable(
            f"the {split} split differs between version {cand['dataset_version']} ({candidate!r}) and version "
            f"{cur['dataset_version']} ({current!r}) of {cand['dataset']!r}: {len(set(shas_cand) ^ set(shas_cur))} "
            "photos are in one but not the other; compare runs on the same fixed test split")
    if not shas_cand:
        raise NotComparable(f"dataset {cand['dataset']!r} has no {split} photos to compare on")
    return cand, cur, shas_cand, shas_cur


def _paired(cand: dict, cur: dict, same_order: bool, split: str, rounds: int) -> dict | None:
    """Paired bootstrap of top-1 (candidate minus current) from the stored per-item results, when the
    items line up one to one (same order and labels); None otherwise."""
    from snapid.evaluate.leaderboard import paired_bootstrap

    arrays = []
    for run in (cand, cur):
        path = Path(run["run_dir"]) / f"eval-{split}-preds.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays.append((data["labels"], data["correct"]))
        except (OSError, KeyError, ValueError):
            return None
    (labels_a, correct_a), (labels_b, correct_b) = arrays
    if not same_order or labels_a.shape != labels_b.shape or not np.array_equal(labels_a, labels_b):
        return None
    return paired_bootstrap(correct_a, correct_b, rounds=rounds)


def promote(candidate: str, *, over: str, workspace: Workspace, engine: Engine, margin: float = DEFAULT_MARGIN,
            split: str = "test", rounds: int = BOOTSTRAP_ROUNDS, progress: Callable[[str], None] | None = None) -> dict:
    """Evaluate both runs on the fixed ``split``; export the candidate to the promoted bundle folder
    only when top-1(candidate) >= top-1(current) + ``margin``. Returns the recorded decision."""
    from snapid.evaluate.evaluation import evaluate_run
    from snapid.export.from_run import export_run

    if not 0 <= margin < 1:
        raise SnapidError(f"--margin {margin}: must be in [0, 1) (a top-1 difference, e.g. 0.005)", code="usage",
                          status=422)
    say = progress or (lambda message: None)
    cand, cur, shas_cand, shas_cur = _comparable_runs(engine, candidate, over, split)
    scores = {}
    for name in (candidate, over):
        say(f"evaluating {name} on {split}")
        scores[name] = float(evaluate_run(name, workspace=workspace, engine=engine, split=split)["top1"])
    bootstrap = _paired(cand, cur, shas_cand == shas_cur, split, rounds)
    gain = scores[candidate] - scores[over]
    promoted = gain >= margin - 1e-12  # top-1 values are ratios of counts: no float noise at the boundary
    reason = (f"{candidate} top-1 {scores[candidate]:.4f} vs {over} {scores[over]:.4f}: "
              f"{'+' if gain >= 0 else ''}{gain:.4f}, {'at least' if promoted else 'below'} the margin {margin:g}")
    details = {"n": len(shas_cand), "gain": gain, "bootstrap": bootstrap,
               "candidate_version": cand["dataset_version"], "current_version": cur["dataset_version"]}
    bundle_path = ""
    if promoted:
        target = promoted_bundle_path(workspace, cand["dataset"])
        say(f"exporting {candidate} to {target}")
        bundle = export_run(candidate, target, workspace=workspace, engine=engine)
        bundle_path, details["bundle_version"], details["bundle_sha256"] = str(target), bundle.version, bundle.sha256
    with transaction(engine) as s:
        return track.record_promotion(
            s, dataset=cand["dataset"], candidate=candidate, current=over, split=split,
            candidate_top1=scores[candidate], current_top1=scores[over], margin=margin, promoted=promoted,
            reason=reason, details=details, bundle_path=bundle_path)
