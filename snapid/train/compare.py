"""`snapid compare`: several backbones trained with ONE recipe, then a leaderboard.

The model-comparison project's rule for a fair comparison: same input size, same head, same loss and
same optimiser settings for every backbone; only the backbone changes. So each model gets the base
config with `model` swapped and `size` forced to one value (base.size, else the FIRST model's input
size). Each model is a tracked run (kind "compare", parent = the comparison's name); a model that
fails (weights unavailable, out of memory...) is listed as failed and the others still run.

Leaderboard columns: top-1 and macro-F1 on the test split (val when there is none), parameters,
inference images/s (the model's forward pass only, batch 32, eval mode, no_grad, on the training
device) and training seconds (the run's started → ended, so data preparation is not counted).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import Engine

from snapid.errors import NotFound, SnapidError
from snapid.metrics import mean_and_std
from snapid.models import factory, registry
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.train.progress import Reporter
from snapid.train.setup import pick_device
from snapid.workspace import Workspace, atomic_write_json

SPEED_BATCH = 32
SPEED_SECONDS = 1.0  # timed stretch per model after the warm-up; tests shorten it


# --- helpers shared with tune.py (no optuna here, so compare does not need it) -----------------
def free_group_name(engine: Engine, workspace: Workspace, base: str, *, explicit: bool) -> str:
    """A sweep/comparison name that no run uses as its name or parent and no run folder holds.

    ``explicit`` (the user's --name) is refused when taken rather than silently renumbered."""
    def taken(candidate: str) -> bool:
        with transaction(engine) as s:
            used = bool(track.list_runs(s, parent=candidate))
            try:
                track.get_run(s, name=candidate)
                used = True
            except NotFound:
                pass
        return used or (workspace.runs / candidate).exists()

    if explicit:
        if taken(base):
            raise SnapidError(f"the name {base!r} is already used by a run or a folder in {workspace.runs}: "
                              "pick another --name", code="run_exists", status=409)
        return base
    name, n = base, 2
    while taken(name):
        name, n = f"{base}-{n}", n + 1
    return name


def settle_run(engine: Engine, name: str, status: str, error: str, *, force: bool = False) -> None:
    """Give a run that train() could not close its final status.

    train() closes runs that fail inside its loop, but a failure before the loop (e.g. weights
    unavailable while building the model) leaves the row "queued"; ``force`` overrides a closed run
    (a pruned trial that train() marked failed)."""
    with transaction(engine) as s:
        try:
            run = track.get_run(s, name=name)
        except NotFound:  # failed before the row existed: nothing to settle
            return
        if force or run["status"] in ("queued", "running"):
            track.finish_run(s, name=name, status=status, summary=run["summary"] or None, error=error)


def error_text(exc: BaseException) -> str:
    return exc.message if isinstance(exc, SnapidError) else f"{type(exc).__name__}: {exc}"


# --- compare -----------------------------------------------------------------------------------
def from_scratch(base: TrainConfig, model: str) -> bool:
    """A model with no pretrained weights to start from: frozen features of random convolutions mean nothing."""
    return not base.pretrained or registry.get_spec(model).default_weights is None


def recipe(base: TrainConfig, model: str, size: int) -> tuple[TrainConfig, str]:
    """The base config with the backbone swapped and the input size forced, and what the row says of it.

    A pretrained backbone keeps the base recipe (probe, then the base's fine-tuning). A model without
    pretrained weights trains every layer from the start, with its own epochs and learning rate (a probe
    of random features is meaningless); head, loss, optimiser, augmentation and size stay the same."""
    config = TrainConfig(**{**base.public(), "model": model, "size": size})
    if not from_scratch(base, model):
        return config, "pretrained: frozen-feature probe" + (f", then {base.finetune_epochs} fine-tune epochs"
                                                             if base.finetune_epochs else "")
    config = config.model_copy(update={"pretrained": False, "probe_epochs": 0, "finetune_epochs": base.scratch_epochs,
                                       "unfreeze": 0, "lr": base.scratch_lr, "warmup_epochs": 1.0,
                                       "patience": max(base.patience, 10)})
    why = "no pretrained weights" if base.pretrained else "pretrained: false"
    return config, (f"from scratch ({why}): all layers, {base.scratch_epochs} epochs at lr {base.scratch_lr:g}, "
                    f"augment {base.augment if isinstance(base.augment, str) else 'list'}")


def inference_speed(model: torch.nn.Module, size: int, device: torch.device, *, batch: int = SPEED_BATCH,
                    seconds: float | None = None) -> float:
    """Images per second of the forward pass on random images: a warm-up, then ~``seconds`` timed."""
    seconds = SPEED_SECONDS if seconds is None else seconds
    model = model.to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        model(x)  # warm-up: allocator, cuDNN autotune, lazy init
        sync()
        done, start = 0, time.perf_counter()
        while done < 3 or time.perf_counter() - start < seconds:  # at least 3 batches, however slow
            model(x)
            done += 1
            sync()
        return done * batch / (time.perf_counter() - start)


def _measure(run: dict, size: int, device: torch.device) -> float:
    # the architecture from the best checkpoint's metadata; weights do not change the speed
    meta = json.loads((Path(run["run_dir"]) / "best.json").read_text())
    return inference_speed(factory.from_config(meta["model"]), size, device)


def _row(model: str, run_name: str, *, run: dict | None, error: str = "", speed: float | None = None,
         recipe: str = "") -> dict:
    summary = (run or {}).get("summary") or {}
    split = "test" if "test_top1" in summary else "val"
    return {"model": model, "run": run_name, "status": run["status"] if run else "failed",
            "top1": summary.get(f"{split}_top1"), "macro_f1": summary.get(f"{split}_macro_f1"), "split": split,
            "parameters": summary.get("parameters"), "images_per_s": speed,
            "train_seconds": run.get("seconds") if run else None, "error": error or (run or {}).get("error", ""),
            "recipe": _ran(recipe, run)}


def _over_seeds(repeats: list[dict]) -> dict:
    """One row for a model trained with several seeds: mean top-1 and macro-F1, their standard deviations, the runs."""
    row = dict(repeats[0])
    for key in ("top1", "macro_f1"):
        row[key], row[f"{key}_std"] = mean_and_std(r[key] for r in repeats)
    row["train_seconds"] = float(np.mean([r["train_seconds"] or 0.0 for r in repeats]))
    row["runs"] = [r["run"] for r in repeats]
    row["seeds"] = len(repeats)
    return row


def _ran(recipe: str, run: dict | None) -> str:
    """The recipe, and how many fine-tune epochs the time budget let it run when it cut them short."""
    summary = (run or {}).get("summary") or {}
    planned = ((run or {}).get("config") or {}).get("finetune_epochs")
    done = summary.get("finetune_epochs_run")
    if planned and done is not None and done < planned:
        return f"{recipe} (the budget stopped it after {done})"
    return recipe


def leaderboard(rows: list[dict]) -> list[dict]:
    """Completed runs by top-1 (then macro-F1) best first; failed ones last, in the order given."""
    done = [r for r in rows if r["status"] == "completed" and r["top1"] is not None]
    rest = [r for r in rows if r not in done]
    return sorted(done, key=lambda r: (-r["top1"], -(r["macro_f1"] or 0.0))) + rest


def compare(dataset: str, models: list[str], base: TrainConfig, *, workspace: Workspace, engine: Engine,
            name: str | None, reporter: Reporter | None = None, workers: int = 1, seeds: int = 1) -> dict:
    """Train each backbone with the same recipe (``seeds`` times, seeds base.seed, base.seed + 1, ...); returns
    {comparison, size, split, leaderboard, path}. With several seeds a row holds the mean and standard deviation."""
    reporter = reporter or Reporter()
    models = list(dict.fromkeys(m.strip() for m in models if m.strip()))  # keep order, drop repeats
    if len(models) < 2:
        raise SnapidError("--models: give at least two backbones to compare, comma separated", code="bad_config")
    if base.weights is not None:
        raise SnapidError("compare: a local weights file belongs to one backbone; drop `weights` from the config "
                          "(each backbone uses its own pretrained weights)", code="bad_config")
    specs = [registry.get_spec(m) for m in models]  # a typo fails now, not after hours of training
    size = base.size or specs[0].input_size
    with transaction(engine) as s:
        version = dataset_store.load_manifest_version(s, name=dataset)  # pinned: every model sees the same data
    group = free_group_name(engine, workspace, name or f"{dataset}-compare", explicit=name is not None)
    device = pick_device(base.device)
    if seeds < 1:
        raise SnapidError(f"--seeds {seeds}: must be 1 or more", code="bad_config")
    rows = []
    for i, model in enumerate(models, 1):
        config, how = recipe(base, model, size)
        repeats = []
        for k in range(seeds):
            run_name = f"{group}-{model.replace('/', '-')}" + (f"-s{base.seed + k}" if seeds > 1 else "")
            reporter.note(f"model {i}/{len(models)}: {model} at {size} px, {how}"
                          f"{f', seed {base.seed + k}' if seeds > 1 else ''} (run {run_name})")
            try:
                train(dataset, config.model_copy(update={"seed": base.seed + k}), workspace=workspace, engine=engine,
                      name=run_name, version=version, reporter=reporter, kind="compare", parent=group, workers=workers)
            except Exception as exc:  # one backbone failing must not stop the others; Ctrl-C still stops all
                settle_run(engine, run_name, "failed", error_text(exc))
                reporter.note(f"{model} failed: {error_text(exc)}")
                repeats = [_row(model, run_name, run=_get(engine, run_name), error=error_text(exc), recipe=how)]
                break
            run = _get(engine, run_name)
            speed = _measure(run, size, device) if k == 0 else repeats[0]["images_per_s"]
            repeats.append(_row(model, run_name, run=run, speed=speed, recipe=how))
        rows.append(_over_seeds(repeats) if len(repeats) > 1 else repeats[0])
    board = leaderboard(rows)
    path = workspace.runs / group / "leaderboard.json"
    result = {"comparison": group, "dataset": dataset, "dataset_version": version, "size": size,
              "device": str(device), "leaderboard": board, "path": str(path)}
    atomic_write_json(path, result)
    return result


def _get(engine: Engine, name: str) -> dict | None:
    with transaction(engine) as s:
        try:
            return track.get_run(s, name=name)
        except NotFound:
            return None
