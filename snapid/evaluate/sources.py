"""What a name in ``runs`` evaluates as: a single trained run or an ensemble of them, and their logits.

The bottom of the evaluate chain (issue 18): sources → calibrate → evaluation → ensemble (creating one),
so calibration, evaluation, export and serving treat an ensemble exactly like a single model without
any of them importing back up. An ensemble's "logits" are the log of the weighted average of its
members' calibrated probabilities: a valid logit (softmax of it gives the average back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.engine import Engine

from snapid.errors import SnapidError
from snapid.metrics import softmax
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace

if TYPE_CHECKING:  # loaded imports torch: deferred so calibrate / evaluation import without it, as before
    from snapid.data.cached_dataset import CachedDataset
    from snapid.evaluate.loaded import TrainedRun

# the identity calibration: what a run without a stored one is served and evaluated with
CALIBRATION_DEFAULTS = {"temperature": 1.0, "threshold": 0.0, "target_accuracy": None, "target_coverage": None,
                        "val_ece_before": None, "val_ece_after": None}


def run_kind(name: str, *, engine: Engine) -> dict:
    """The runs row of ``name`` (its "kind" says "ensemble" or the single run's kind)."""
    with transaction(engine) as s:
        return track.get_run(s, name=name)


def logits_for(name: str, split: str, *, workspace: Workspace, engine: Engine, tta: bool = False):
    """(logits N x C, labels N, dataset) of a run or an ensemble on one split of its prepared cache.
    An ensemble's "logits" are the log of its averaged calibrated probabilities (same softmax path)."""
    if run_kind(name, engine=engine)["kind"] == "ensemble":
        return ensemble_logits(name, split, workspace=workspace, engine=engine, tta=tta)
    from snapid.evaluate.loaded import load_trained, predict_logits, split_dataset

    trained = load_trained(name, engine=engine)
    dataset = split_dataset(trained, split, workspace=workspace, engine=engine)
    logits, labels = predict_logits(trained.model, dataset, trained.preprocess, tta=tta)
    return logits, labels, dataset


def trained_members(name: str, *, engine: Engine) -> list:
    """The TrainedRun(s) behind a name: the run itself, or an ensemble's members."""
    if run_kind(name, engine=engine)["kind"] == "ensemble":
        return list(load_ensemble(name, engine=engine).members)
    from snapid.evaluate.loaded import load_trained

    return [load_trained(name, engine=engine)]


# --- stored calibration (an ensemble freezes its members' temperatures from it) ---------------------
def stored_calibration(name: str, *, engine: Engine) -> dict:
    """The run's stored calibration, or the identity (temperature 1, threshold 0) when it has none."""
    with transaction(engine) as s:
        found = [a["meta"] for a in track.artifacts(s, name=name) if a["kind"] == "calibration"]
    return {**CALIBRATION_DEFAULTS, **(found[0] if found else {})}


def has_calibration(name: str, *, engine: Engine) -> bool:
    with transaction(engine) as s:
        return any(a["kind"] == "calibration" for a in track.artifacts(s, name=name))


# --- ensembles ------------------------------------------------------------------------------------
class EnsembleError(SnapidError):
    code = "bad_ensemble"
    status = 422


@dataclass
class Ensemble:
    name: str
    run: dict                   # the runs row (config holds members, method, weights)
    members: list[TrainedRun]
    weights: list[float]
    temperatures: list[float]   # each member's stored calibration temperature

    @property
    def classes(self) -> list[dict]:
        return self.members[0].classes

    @property
    def method(self) -> str:
        return self.run["config"].get("method", "soft")


def load_ensemble(name: str, *, engine: Engine) -> Ensemble:
    """The ensemble's row, its members' best models, their weights and calibration temperatures."""
    from snapid.evaluate.loaded import load_trained

    with transaction(engine) as s:
        run = track.get_run(s, name=name)
    if run["kind"] != "ensemble":
        raise EnsembleError(f"run {name!r} is a single {run['kind']} run, not an ensemble")
    config = run["config"] or {}
    names, weights = list(config.get("members") or []), list(config.get("weights") or [])
    if len(names) < 2 or len(weights) != len(names):
        raise EnsembleError(f"ensemble {name!r} has a broken config (members {names}, weights {weights}); "
                            "create it again")
    members = [load_trained(member, engine=engine) for member in names]
    frozen = config.get("temperatures")
    temperatures = ([float(t) for t in frozen] if frozen and len(frozen) == len(names) else  # older rows: the live ones
                    [float(stored_calibration(member, engine=engine)["temperature"]) for member in names])
    return Ensemble(name=name, run=run, members=members, weights=[float(w) for w in weights], temperatures=temperatures)


def member_probabilities(members: list[TrainedRun], temperatures: list[float], split: str, *, workspace: Workspace,
                         engine: Engine, tta: bool = False) -> tuple[np.ndarray, np.ndarray, CachedDataset]:
    """(probs M x N x C, labels N, first member's dataset): each member's calibrated softmax on ``split``."""
    from snapid.evaluate.loaded import predict_logits, split_dataset

    stacked, labels, first = [], None, None
    for member, temperature in zip(members, temperatures, strict=True):
        dataset = split_dataset(member, split, workspace=workspace, engine=engine)
        logits, member_labels = predict_logits(member.model, dataset, member.preprocess, tta=tta)
        if labels is None:
            labels, first = member_labels, dataset
        elif len(member_labels) != len(labels) or not np.array_equal(member_labels, labels):
            raise EnsembleError(f"members {members[0].name!r} and {member.name!r} see different {split} items "
                                f"({len(labels)} vs {len(member_labels)}); "
                                "were their caches prepared from different data?")
        stacked.append(softmax(logits, temperature))
    return np.stack(stacked), labels, first


def ensemble_logits(name: str, split: str, *, workspace: Workspace, engine: Engine,
                    tta: bool = False) -> tuple[np.ndarray, np.ndarray, CachedDataset]:
    """(log of the weighted average of the members' calibrated probabilities N x C, labels N, dataset)."""
    ens = load_ensemble(name, engine=engine)
    probs, labels, dataset = member_probabilities(ens.members, ens.temperatures, split, workspace=workspace,
                                                  engine=engine, tta=tta)
    return mixture_log_probs(probs, ens.weights), labels, dataset


def mixture_log_probs(probs: np.ndarray, weights: list[float]) -> np.ndarray:
    """log(sum_m w_m p_m) for probs M x N x C; clipped so a class no member believes in stays finite."""
    mixed = np.tensordot(np.asarray(weights, dtype=np.float64), probs, axes=1)
    return np.log(np.clip(mixed, 1e-12, None)).astype(np.float32)
