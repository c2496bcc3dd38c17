"""Ensembles: several finished runs voting with their calibrated probabilities.

An ensemble is a row in ``runs`` (kind "ensemble", model "ensemble", status completed) whose config
names its members, the method and the weights. Its prediction for an image is the weighted average of
the members' temperature-scaled softmax outputs; ``ensemble_logits`` returns the log of that average,
which is a valid logit (softmax of it gives the average back), so calibration, evaluation, export and
serving treat an ensemble exactly like a single model.

Weights:
- ``soft``: equal weights.
- ``weighted``: the mixture weights that maximise the likelihood of the validation labels under the
  averaged calibrated probabilities (the lowest validation NLL of the ensemble), found by EM on the
  simplex, with a small Dirichlet prior (each member starts with the weight of ``PRIOR_ITEMS``
  validation images). A member that adds nothing to the others' predictions gets a small weight; a
  member that is better everywhere gets most of it; on a tiny validation split the prior keeps the
  weights near equal instead of trusting a handful of images.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from snapid.errors import NotFound, SnapidError
from snapid.evaluate.calibrate import stored_calibration
from snapid.evaluate.evaluation import HEADLINE, ensure_calibration, evaluate_run
from snapid.evaluate.loaded import TrainedRun, load_trained
from snapid.evaluate.sources import (  # re-exported: reading an ensemble lives in sources
    Ensemble,
    EnsembleError,
    ensemble_logits,
    load_ensemble,
    member_probabilities,
    mixture_log_probs,
)
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace

METHODS = ("soft", "weighted")
MAX_MEMBERS = 16            # each member is a whole model held in memory at once
EM_ROUNDS = 500
EM_TOLERANCE = 1e-7         # stop when the validation NLL improves by less than this
PRIOR_ITEMS = 2.0           # "weighted": each member starts with the weight of 2 validation images of its own
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # the name becomes a folder name


# --- the weights -------------------------------------------------------------------------------------
def fit_mixture_weights(probs: np.ndarray, labels: np.ndarray, *, prior_items: float = PRIOR_ITEMS) -> list[float]:
    """Mixture weights on the simplex maximising sum_i log(sum_m w_m p_m[i, y_i]) + prior_items * sum_m log w_m.

    MAP-EM: each round gives member m the share of the validation items it explains (its
    "responsibility"), plus ``prior_items`` pseudo-items. The objective never gets worse from one round
    to the next; the prior keeps a small validation split from handing all the weight to one member."""
    members, n = probs.shape[0], len(labels)
    if n == 0:
        raise EnsembleError("--method weighted needs a validation split to set the weights; use --method soft")
    own = np.clip(probs[:, np.arange(n), labels], 1e-12, None)   # M x N: each member's p(true class)
    weights = np.full(members, 1.0 / members)
    previous = np.inf
    for _ in range(EM_ROUNDS):
        mixed = weights @ own
        loss = float(-(np.log(mixed).sum() + prior_items * np.log(weights).sum()) / n)
        if previous - loss < EM_TOLERANCE:
            break
        previous = loss
        responsibility = (weights[:, None] * own / mixed).sum(axis=1)
        weights = (responsibility + prior_items) / (n + members * prior_items)
    return [round(float(w), 6) for w in weights / weights.sum()]


def equal_weights(count: int) -> list[float]:
    return [1.0 / count] * count


# --- creating ------------------------------------------------------------------------------------------
def create_ensemble(members: list[str], *, name: str, method: str = "soft", workspace: Workspace,
                    engine: Engine) -> dict:
    """Check the members, calibrate those that are not, set the weights, create the ensemble's run,
    then calibrate and evaluate the ensemble itself on the test split. Returns the ensemble's config
    and its headline test figures."""
    runs = _check_request(members, name=name, method=method, engine=engine)
    trained = [load_trained(member, engine=engine) for member in members]
    _check_classes(trained)
    for member in members:   # fitted once and stored; a member without a val split keeps T = 1
        ensure_calibration(member, workspace=workspace, engine=engine)
    temperatures = [float(stored_calibration(member, engine=engine)["temperature"]) for member in members]
    if method == "weighted":
        probs, labels, _ = member_probabilities(trained, temperatures, "val", workspace=workspace, engine=engine)
        weights = fit_mixture_weights(probs, labels)
    else:
        weights = equal_weights(len(members))
    parameters = sum(int(r["summary"].get("parameters") or 0) for r in runs)
    _create_row(name, runs[0], members=members, method=method, weights=weights, parameters=parameters,
                workspace=workspace, engine=engine, temperatures=temperatures)
    result = evaluate_run(name, workspace=workspace, engine=engine, split="test")  # calibrates the ensemble first
    return {"name": name, "members": members, "method": method, "weights": weights, "temperatures": temperatures,
            "temperature": result["temperature"], "threshold": result["threshold"],
            **{k: result.get(k) for k in HEADLINE}}


def _check_request(members: list[str], *, name: str, method: str, engine: Engine) -> list[dict]:
    """The members' rows, after checking everything that can be checked without loading a model."""
    if method not in METHODS:
        raise EnsembleError(f"unknown ensemble method {method!r} (expected one of {', '.join(METHODS)})")
    if not NAME_PATTERN.match(name or ""):
        raise EnsembleError(f"ensemble name {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit")
    if len(members) < 2 or len(members) > MAX_MEMBERS:
        raise EnsembleError(f"an ensemble needs 2 to {MAX_MEMBERS} member runs, got {len(members)}")
    if len(set(members)) != len(members):
        raise EnsembleError(f"a run is listed twice among the members {members}")
    if name in members:
        raise EnsembleError(f"the ensemble's name {name!r} is also one of its members")
    with transaction(engine) as s:
        runs = [track.get_run(s, name=member) for member in members]
        if _exists(s, name):   # checked before any model is loaded; create_run checks again
            raise SnapidError(f"a run named {name!r} already exists: pick another --name", code="run_exists",
                              status=409)
    for run in runs:
        if run["kind"] == "ensemble":
            raise EnsembleError(f"{run['name']!r} is itself an ensemble; ensembles of ensembles are not supported, "
                                f"list its members instead: {', '.join(run['config'].get('members', []))}")
        if run["status"] != "completed":
            raise EnsembleError(f"run {run['name']!r} is {run['status']}, not completed; only finished runs can vote")
    first = runs[0]
    for run in runs[1:]:
        if (run["dataset"], run["dataset_version"]) != (first["dataset"], first["dataset_version"]):
            raise EnsembleError(f"runs {first['name']!r} ({first['dataset']} v{first['dataset_version']}) and "
                                f"{run['name']!r} ({run['dataset']} v{run['dataset_version']}) were trained on "
                                "different dataset versions")
    return runs


def _exists(session, name: str) -> bool:
    try:
        track.get_run(session, name=name)
    except NotFound:
        return False
    return True


def _check_classes(trained: list[TrainedRun]) -> None:
    ids = [c["id"] for c in trained[0].classes]
    for member in trained[1:]:
        other = [c["id"] for c in member.classes]
        if other != ids:
            raise EnsembleError(f"runs {trained[0].name!r} and {member.name!r} have different class lists "
                                f"({len(ids)} vs {len(other)} classes, or another order)")


def _create_row(name: str, first: dict, *, members: list[str], method: str, weights: list[float], parameters: int,
                workspace: Workspace, engine: Engine, temperatures: list[float]) -> None:
    """The ensemble's runs row, completed in one transaction (it has nothing to train). The members'
    temperatures are frozen into it: recalibrating a member later must not change this ensemble."""
    folder = workspace.runs / name
    config = {"members": members, "method": method, "weights": weights, "temperatures": temperatures}
    with transaction(engine) as s:
        track.create_run(s, name=name, dataset=first["dataset"], dataset_version=first["dataset_version"],
                         model="ensemble", config=config, run_dir=str(folder), monitor="val_top1", kind="ensemble")
        track.start_run(s, name=name, host=socket.gethostname(), pid=os.getpid())
        track.finish_run(s, name=name, status="completed", summary={"parameters": parameters, "members": len(members)})
    Path(folder).mkdir(parents=True, exist_ok=True)


__all__ = ["Ensemble", "EnsembleError", "create_ensemble", "ensemble_logits", "equal_weights", "fit_mixture_weights",
           "load_ensemble", "member_probabilities", "mixture_log_probs"]
