"""`snapid tune`: an Optuna sweep over TrainConfig options; every trial is a tracked run.

Sampler: TPE (seeded) by default, or a grid. Pruning: the median rule (MedianPruner) on the monitored
metric, reported after every epoch, so a trial that is worse than the median of earlier trials at the
same epoch stops early. Optuna's own bookkeeping stays in memory: the database of record is snapid's
runs table (kind "tune-trial", parent = the sweep, name "<sweep>-t<k>"). The best trial's full config
is written to ``<workspace>/runs/<sweep>/best.yaml`` (usable as ``snapid train DATASET --config best.yaml``)
and the sweep's summary to ``sweep.json`` beside it, both rewritten after every trial.

Space file (YAML)::

    method: tpe            # or grid
    prune: true            # or false, or {startup_trials: 3, warmup_epochs: 2}
    params:                # every key is a TrainConfig option (see docs/training.md)
      probe_lr: {low: 1e-4, high: 1e-2, log: true}   # a range: float, or int for integer options
      batch_size: [16, 32, 64]                       # a list: choices
      dropout: {low: 0.0, high: 0.5, step: 0.25}     # a grid needs lists, or ranges with a step

All trials share base.seed, so the differences between them come from the parameters, not the seed.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml
from pydantic import ValidationError
from sqlalchemy import Engine

from snapid.errors import SnapidError
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from snapid.train.compare import error_text, free_group_name, settle_run
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.train.progress import Reporter
from snapid.workspace import Workspace, atomic_write_json, atomic_write_text

DEFAULT_SPACE = {
    "method": "tpe",
    "params": {
        "probe_lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "weight_decay": {"low": 1e-5, "high": 1e-1, "log": True},
        "dropout": {"low": 0.0, "high": 0.5},
        "label_smoothing": {"low": 0.0, "high": 0.2},
        "augment": ["light", "medium", "heavy"],
    },
}
RECORD_KEY = {"val_top1": "top1", "val_loss": "val_loss", "val_macro_f1": "macro_f1"}  # monitor → epoch record
PRUNED = "pruned by the median rule"


# --- the search space ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    choices: tuple | None = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    integer: bool = False

    def grid(self) -> list:
        if self.choices is not None:
            return list(self.choices)
        n = int(round((self.high - self.low) / self.step))
        values = [self.low + i * self.step for i in range(n + 1)]
        return [int(round(v)) if self.integer else round(v, 12) for v in values]

    def suggest(self, trial: optuna.Trial, grid: bool):
        if grid or self.choices is not None:  # GridSampler only accepts values from its grid
            return trial.suggest_categorical(self.name, self.grid())
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Space:
    method: str
    params: dict[str, Param]
    prune: bool = True
    startup_trials: int = 3  # trials that always finish before the median means anything
    warmup_epochs: int = 2   # epochs of every trial that are never pruned (the first epochs are noisy)
    grid_size: int = 0

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.method == "grid":
            return optuna.samplers.GridSampler({k: p.grid() for k, p in self.params.items()}, seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def pruner(self) -> optuna.pruners.BasePruner:
        if not self.prune:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs)


def _is_int_field(name: str) -> bool:
    ann = TrainConfig.model_fields[name].annotation
    return ann is int or (int in typing.get_args(ann) and bool not in typing.get_args(ann))


def _check_value(base: TrainConfig, key: str, value, bad) -> object:
    """The value as TrainConfig validates it (YAML reads `1e-4` as a string; pydantic makes it a float)."""
    try:
        checked = getattr(TrainConfig(**{**base.public(), key: value}), key)
    except ValidationError as exc:
        raise bad(f"{value!r} is not allowed ({exc.errors()[0]['msg']})") from None
    if not (checked is None or isinstance(checked, (bool, int, float, str))):
        raise bad("choices must be single values (numbers, words, true/false)")
    return checked


def _param(key: str, spec, base: TrainConfig, method: str, bad) -> Param:
    if isinstance(spec, list):
        if not spec:
            raise bad("an empty list of choices")
        return Param(key, choices=tuple(dict.fromkeys(_check_value(base, key, v, bad) for v in spec)))
    if not isinstance(spec, dict):
        raise bad("give a list of choices or a range {low: ..., high: ...}; fixed values belong in --config")
    extra = set(spec) - {"low", "high", "log", "step"}
    if extra or not {"low", "high"} <= set(spec):
        raise bad(f"a range takes low, high and optionally log, step (got {', '.join(map(str, spec))})")
    integer = _is_int_field(key)
    if not integer and not isinstance(TrainConfig.model_fields[key].default, float):
        raise bad("a range needs a numeric option; give a list of choices")
    try:
        low, high = float(spec["low"]), float(spec["high"])
        step = float(spec["step"]) if spec.get("step") is not None else None
    except (TypeError, ValueError):
        raise bad("low, high and step must be numbers") from None
    log = bool(spec.get("log", False))
    if not low < high or (log and low <= 0) or (step is not None and step <= 0):
        raise bad("needs low < high (low > 0 with log: true, step > 0)")
    if log and step is not None:
        raise bad("a log range cannot have a step")
    if method == "grid" and step is None:
        raise bad("a grid needs a list of values, or a range with a step")
    for v in (low, high):
        _check_value(base, key, int(v) if integer else v, bad)
    return Param(key, low=low, high=high, log=log, step=step, integer=integer)


def parse_space(data, base: TrainConfig, *, source: str = "search space") -> Space:
    """Validate a space mapping; every error is bad_config naming ``source`` and the key."""
    def bad_at(where: str):
        return lambda msg: SnapidError(f"{source}: {where}: {msg}", code="bad_config")

    if not isinstance(data, dict):
        raise bad_at("top level")("the space must be a mapping with method and params")
    for key in data:
        if key not in ("method", "params", "prune"):
            hint = " (options go under params:)" if key in TrainConfig.model_fields else ""
            raise bad_at(f"key {key!r}")(f"unknown key; expected method, params, prune{hint}")
    method = str(data.get("method", "tpe")).lower()
    if method not in ("tpe", "grid"):
        raise bad_at("method")(f"{method!r} is not tpe or grid")
    raw = data.get("params")
    if not isinstance(raw, dict) or not raw:
        raise bad_at("params")("give at least one option to tune, e.g. probe_lr: {low: 1e-4, high: 1e-2, log: true}")
    params = {}
    for key, spec in raw.items():
        if key not in TrainConfig.model_fields:
            raise bad_at(f"params.{key}")("unknown option; the options are TrainConfig's (docs/training.md)")
        params[key] = _param(key, spec, base, method, bad_at(f"params.{key}"))
    prune, startup, warmup = data.get("prune", True), Space.startup_trials, Space.warmup_epochs
    if isinstance(prune, dict):
        if set(prune) - {"startup_trials", "warmup_epochs"}:
            raise bad_at("prune")("takes startup_trials and warmup_epochs")
        startup, warmup = int(prune.get("startup_trials", startup)), int(prune.get("warmup_epochs", warmup))
        prune = True
    elif not isinstance(prune, bool):
        raise bad_at("prune")("true, false or {startup_trials: N, warmup_epochs: N}")
    size = math.prod(len(p.grid()) for p in params.values()) if method == "grid" else 0
    return Space(method, params, prune, startup, warmup, size)


LBFGS_SPACE = {  # the L-BFGS probe picks its own weight decay; what is left to tune is what it is fed
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "probe_views": [1, 2, 4],
}


def default_space(base: TrainConfig) -> dict:
    """The space used without --space; tunes the fine-tune rate instead when there is no probe phase, and what
    the L-BFGS probe is fed (views, label smoothing) when it fits the head."""
    from snapid.train.phases import probe_solver

    space = {"method": "tpe", "params": dict(DEFAULT_SPACE["params"])}
    if base.probe_epochs and probe_solver(base) == "lbfgs" and not base.finetune_epochs:
        space["params"] = dict(LBFGS_SPACE)
    elif base.probe_epochs == 0:
        space["params"]["lr"] = {"low": 1e-5, "high": 3e-3, "log": True}
        del space["params"]["probe_lr"]
    return space


def load_space(path: Path | None, base: TrainConfig) -> dict:
    """The space file as a checked mapping (errors name the file); the default space when ``path`` is None."""
    if path is None:
        return default_space(base)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SnapidError(f"{path}: cannot read the search space ({exc})", code="bad_config") from None
    parse_space(data, base, source=str(path))
    return data


# --- one trial -----------------------------------------------------------------------------------
class PruningReporter(Reporter):
    """Passes everything on to the caller's reporter, and reports the monitored metric to the trial
    after each epoch; raises optuna.TrialPruned when the median rule says stop."""

    def __init__(self, trial, key: str, inner: Reporter | None = None):
        self.trial, self.key, self.inner = trial, key, inner or Reporter()

    def phase(self, title: str, total: int) -> None:
        self.inner.phase(title, total)

    def progress(self, done: int, total: int, images_per_s: float | None = None) -> None:
        self.inner.progress(done, total, images_per_s)

    def note(self, text: str) -> None:
        self.inner.note(text)

    def epoch(self, record: dict) -> None:
        self.inner.epoch(record)
        value = record.get(self.key)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), int(record["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{PRUNED} at epoch {record['epoch']} ({self.key} {value:.4f})")


def run_trial(dataset: str, config: TrainConfig, trial, *, run_name: str, sweep: str, workspace: Workspace,
              engine: Engine, version: int | None = None, reporter: Reporter | None = None, workers: int = 1) -> dict:
    """Train one trial as a tracked run: {status: completed|pruned|failed, value, error}."""
    key = RECORD_KEY[config.monitor]
    try:
        summary = train(dataset, config, workspace=workspace, engine=engine, name=run_name, version=version,
                        reporter=PruningReporter(trial, key, reporter), kind="tune-trial", parent=sweep,
                        workers=workers)
    except optuna.TrialPruned as exc:
        # train() marked the run failed (it treats any exception so); a pruned trial was stopped on purpose
        settle_run(engine, run_name, "stopped", str(exc), force=True)
        return {"status": "pruned", "value": None, "error": str(exc)}
    except Exception as exc:  # a failing trial (out of memory at a large batch...) must not end the sweep
        settle_run(engine, run_name, "failed", error_text(exc))
        return {"status": "failed", "value": None, "error": error_text(exc)}
    value = summary.get(config.monitor)
    if value is None or not math.isfinite(value):
        return {"status": "failed", "value": None, "error": f"{config.monitor} is not finite"}
    return {"status": "completed", "value": float(value), "error": ""}


# --- the sweep -----------------------------------------------------------------------------------
class _TrialFailed(Exception):
    """A trial that failed (reported already); optimize() records it as FAIL and goes on."""


@dataclass
class _Sweep:
    """The objective Optuna calls once per trial; keeps the sweep's record and best.yaml up to date."""

    dataset: str
    version: int
    base: TrainConfig
    space: Space
    trials: int
    folder: Path
    workspace: Workspace
    engine: Engine
    reporter: Reporter
    workers: int
    result: dict

    def better(self, value: float) -> bool:
        best = self.result["best_value"]
        return best is None or (value < best if self.base.monitor == "val_loss" else value > best)

    def __call__(self, trial: optuna.Trial) -> float:
        k, sweep, res = len(self.result["trials"]) + 1, self.result["sweep"], self.result
        params = {key: p.suggest(trial, self.space.method == "grid") for key, p in self.space.params.items()}
        run_name = f"{sweep}-t{k}"
        self.reporter.note(f"trial {k}/{self.trials} ({run_name}): "
                           + ", ".join(f"{a}={_fmt(b)}" for a, b in params.items()))
        config = TrainConfig(**{**self.base.public(), **params})
        out = run_trial(self.dataset, config, trial, run_name=run_name, sweep=sweep, workspace=self.workspace,
                        engine=self.engine, version=self.version, reporter=self.reporter, workers=self.workers)
        res["trials"].append({"number": k, "run": run_name, "params": params, **out})
        if out["status"] == "completed" and self.better(out["value"]):
            res.update(best_trial=run_name, best_value=out["value"], best_params=params,
                       best_config=str(self.folder / "best.yaml"))
            _write_best(self.folder / "best.yaml", config, sweep, run_name, self.base.monitor, out["value"])
        atomic_write_json(self.folder / "sweep.json", res)  # after every trial: an interrupted sweep keeps its record
        if out["status"] == "completed":
            return out["value"]
        self.reporter.note(f"trial {k} {out['status']}: {out['error']}")
        if out["status"] == "pruned":
            raise optuna.TrialPruned(out["error"])
        raise _TrialFailed(out["error"])


def tune(dataset: str, base: TrainConfig, space: dict, *, trials: int | None, workspace: Workspace, engine: Engine,
         name: str | None, seed: int = 0, reporter: Reporter | None = None, workers: int = 1) -> dict:
    """Run the sweep; returns {sweep, trials: [...], best_trial, best_value, best_params, best_config, path, ...}."""
    parsed = parse_space(space, base)
    if parsed.method == "grid":
        trials = min(trials or parsed.grid_size, parsed.grid_size)  # past the grid, GridSampler would repeat points
    if not trials or trials < 1:
        raise SnapidError("--trials must be at least 1", code="bad_config")
    with transaction(engine) as s:
        version = dataset_store.load_manifest_version(s, name=dataset)  # pinned: every trial sees the same data
    sweep = free_group_name(engine, workspace, name or f"{dataset}-tune", explicit=name is not None)
    folder = workspace.runs / sweep
    direction = "minimize" if base.monitor == "val_loss" else "maximize"
    result = {"sweep": sweep, "dataset": dataset, "dataset_version": version, "method": parsed.method,
              "monitor": base.monitor, "direction": direction, "trials": [], "best_trial": None, "best_value": None,
              "best_params": None, "best_config": None, "path": str(folder / "sweep.json")}
    # trials (failures included) are reported through `reporter`; optuna's own log would say it all twice
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=sweep, direction=direction, sampler=parsed.sampler(seed),
                                pruner=parsed.pruner())  # in-memory storage: the runs table is the record
    objective = _Sweep(dataset, version, base, parsed, trials, folder, workspace, engine, reporter or Reporter(),
                       workers, result)
    # optimize() rather than ask/tell: GridSampler ends the study itself once every grid point has run
    study.optimize(objective, n_trials=trials, catch=(_TrialFailed,))
    if result["best_trial"] is None:
        last = result["trials"][-1]["error"]
        raise SnapidError(f"sweep {sweep}: no trial completed (last error: {last}); see `snapid runs list`",
                          code="tune_failed")
    return result


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _write_best(path: Path, config: TrainConfig, sweep: str, run: str, monitor: str, value: float) -> None:
    header = (f"# best trial of sweep {sweep}: {run} ({monitor} {value:.4f})\n"
              f"# use it with: snapid train DATASET --config {path}\n")
    atomic_write_text(path, header + yaml.safe_dump(config.public(), sort_keys=False))
