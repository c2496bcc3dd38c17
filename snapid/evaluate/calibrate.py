"""Calibration: temperature scaling and the open-set rejection threshold, both fitted on the
validation split and stored with the run (artifact kind "calibration"), so that served
probabilities mean what they say and low-confidence photos get the answer "unknown".

Temperature scaling (Guo et al., 2017) divides the logits by one scalar T fitted to minimise the
validation NLL; the ranking of the classes, hence accuracy, is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from snapid import metrics
from snapid.errors import SnapidError

# DEFAULTS, has_calibration and stored_calibration are re-exported: callers read the stored calibration from here
from snapid.evaluate.sources import CALIBRATION_DEFAULTS as DEFAULTS  # noqa: F401
from snapid.evaluate.sources import has_calibration as has_calibration
from snapid.evaluate.sources import logits_for, run_kind
from snapid.evaluate.sources import stored_calibration as stored_calibration
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace, atomic_write_text

T_BOUNDS = (0.05, 20.0)
DEFAULT_TARGET_ACCURACY = 0.95
THRESHOLD_Z = 1.0  # the target accuracy must hold one standard error below the validation figure



class NoValidationSplit(SnapidError):
    code = "no_validation_split"
    status = 422


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = T_BOUNDS,
                    tol: float = 1e-4) -> float:
    """The T in ``bounds`` minimising NLL(softmax(logits / T)), by golden-section search on log T.

    NLL is convex in 1/T, so it is unimodal in log T and the search cannot get stuck. When every
    validation answer is right, the NLL keeps falling as T → 0: the data say nothing about how
    overconfident the model is, so we do not sharpen (T is at least 1 then)."""
    if len(labels) == 0:
        return 1.0
    logits = np.asarray(logits, dtype=np.float64)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return metrics.nll(logits, labels, math.exp(log_t))

    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tol:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    best = math.exp((lo + hi) / 2)
    # the ends themselves: the interior probes never quite reach a bound
    candidates = [(loss(math.log(t)), t) for t in (bounds[0], best, bounds[1])]
    temperature = min(candidates)[1]
    if (logits.argmax(axis=1) == labels).all():
        temperature = max(temperature, 1.0)
    return float(temperature)


def calibration_from_logits(logits: np.ndarray, labels: np.ndarray, *, target_accuracy: float | None = None,
                            target_coverage: float | None = None) -> dict:
    """Temperature, threshold and the validation figures behind them (pure; see ``calibrate_run``)."""
    if target_accuracy is None and target_coverage is None:
        target_accuracy = DEFAULT_TARGET_ACCURACY
    check_targets(target_accuracy, target_coverage)
    temperature = fit_temperature(logits, labels)
    before, after = metrics.softmax(logits), metrics.softmax(logits, temperature)
    confidence, correct = after.max(axis=1), after.argmax(axis=1) == labels
    threshold = metrics.choose_threshold(confidence, correct, target_accuracy=target_accuracy,
                                         target_coverage=target_coverage, z=THRESHOLD_Z)
    accepted = confidence >= threshold
    return {"temperature": temperature, "threshold": threshold, "target_accuracy": target_accuracy,
            "target_coverage": target_coverage,
            "val_ece_before": metrics.expected_calibration_error(before, labels),
            "val_ece_after": metrics.expected_calibration_error(after, labels),
            "val_nll_before": metrics.nll(logits, labels), "val_nll_after": metrics.nll(logits, labels, temperature),
            "val_coverage": float(accepted.mean()),
            "val_accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
            "target_met": bool(target_accuracy is None
                               or (accepted.any() and correct[accepted].mean() >= target_accuracy)),
            "val_n": len(labels)}


def check_targets(target_accuracy: float | None, target_coverage: float | None) -> None:
    if target_accuracy is not None and target_coverage is not None:
        raise SnapidError("give --target-accuracy or --target-coverage, not both", code="usage", status=422)
    for flag, value in (("--target-accuracy", target_accuracy), ("--target-coverage", target_coverage)):
        if value is not None and not 0.0 < value <= 1.0:
            raise SnapidError(f"{flag} {value}: must be in (0, 1]", code="usage", status=422)


def calibrate_run(name: str, *, workspace: Workspace, engine: Engine, target_accuracy: float | None = None,
                  target_coverage: float | None = None, tta: bool = False, val: tuple | None = None) -> dict:
    """Fit the temperature and the rejection threshold on the validation split (target accuracy of
    the accepted answers, 0.95 unless a target is given) and store them with the run: a
    ``calibration.json`` in the run folder and the artifact "calibration". Returns the stored dict.
    ``val``: the split's (logits, labels) when the caller has them already."""
    check_targets(target_accuracy, target_coverage)
    logits, labels = val if val is not None else val_logits(name, workspace=workspace, engine=engine, tta=tta)
    result = calibration_from_logits(logits, labels, target_accuracy=target_accuracy, target_coverage=target_coverage)
    result["tta"] = tta
    run = run_kind(name, engine=engine)
    path = Path(run["run_dir"]) / "calibration.json"
    text = json.dumps(result, indent=1)
    atomic_write_text(path, text)
    with transaction(engine) as s:
        track.record_artifact(s, name=name, kind="calibration", path=str(path),
                              sha256=hashlib.sha256(text.encode()).hexdigest(), meta=result)
    return result


def val_logits(name: str, *, workspace: Workspace, engine: Engine, tta: bool = False) -> tuple:
    """(logits, labels) of the run on its validation split; NoValidationSplit when it has none."""
    logits, labels, _ = logits_for(name, "val", workspace=workspace, engine=engine, tta=tta)
    if len(labels) == 0:
        raise NoValidationSplit(f"run {name!r}: its dataset has no validation photos to calibrate on; "
                                "re-import it with a val split (or let the importer carve one from train)")
    return logits, labels


SERVING_COVERAGE = 0.9  # share of photos answered when the accuracy target is out of reach


def calibrate_for_serving(name: str, *, workspace: Workspace, engine: Engine) -> dict:
    """``calibrate_run`` at the default accuracy target; when no threshold reaches it on the validation
    photos (a small or hard dataset), one that accepts 90 % of them instead, so the server does not
    answer "not sure" to nearly everything. The result says which: ``target_met``, ``target_coverage``."""
    val = val_logits(name, workspace=workspace, engine=engine)  # once: the model's pass is the slow part
    result = calibrate_run(name, workspace=workspace, engine=engine, val=val)
    if result.get("target_met") is False:
        result = calibrate_run(name, workspace=workspace, engine=engine, target_coverage=SERVING_COVERAGE, val=val)
        result["accuracy_target_missed"] = True
    return result
