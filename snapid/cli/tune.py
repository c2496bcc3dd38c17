"""`snapid tune` (an Optuna sweep) and `snapid compare` (several backbones, one recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from snapid.cli.common import console, emit_json, engine, settings, workspace
from snapid.cli.train import RichReporter
from snapid.errors import SnapidError


def _base_config(config: Optional[Path], **overrides):
    from snapid.train.config import TrainConfig

    return TrainConfig.load(config, overrides)


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def tune(
    dataset: str = typer.Argument(..., help="Dataset name."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Number of trials (default 20; a grid: its size)."),
    space: Optional[Path] = typer.Option(None, "--space", help="YAML search space (see docs/training.md); "
                                         "default: probe_lr, weight_decay, dropout, label_smoothing, augment."),
    name: Optional[str] = typer.Option(None, help="Sweep name (default: DATASET-tune, numbered)."),
    model: Optional[str] = typer.Option(None, help="Backbone (see `snapid weights list`)."),
    epochs: Optional[int] = typer.Option(None, help="Fine-tune epochs per trial (phase 2; 0 skips it)."),
    probe_epochs: Optional[int] = typer.Option(None, "--probe-epochs", help="Head-only epochs per trial (phase 1)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of fixed options; the space varies the rest."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Train from scratch (no ImageNet weights)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, help="Sampler seed (the same seed proposes the same trials)."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep summary as JSON on stdout."),
) -> None:
    """Search training options with Optuna (TPE, or a grid); bad trials stop early by the median rule.

    Every trial is a tracked run named SWEEP-tK; the best trial's config is saved as
    runs/SWEEP/best.yaml, ready for `snapid train DATASET --config runs/SWEEP/best.yaml`.
    """
    from snapid.train.tune import load_space, tune as run_tune

    base = _base_config(config, model=model, finetune_epochs=epochs, probe_epochs=probe_epochs, batch_size=batch_size,
                        device=device, pretrained=False if no_pretrained else None)
    space_data = load_space(space, base)  # errors name the file and key before anything trains
    if trials is not None and trials < 1:
        raise SnapidError("--trials must be at least 1", code="usage")
    if trials is None and str(space_data.get("method", "tpe")).lower() != "grid":
        trials = 20
    with RichReporter(quiet=as_json) as reporter:
        result = run_tune(dataset, base, space_data, trials=trials, workspace=workspace(), engine=engine(), name=name,
                          seed=seed, reporter=reporter, workers=settings().workers)
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"sweep {result['sweep']} ({result['method']}, {result['monitor']})", box=box.SIMPLE_HEAD)
    for col in ("trial", "status", result["monitor"], "params"):
        table.add_column(col, justify="right" if col == result["monitor"] else "left")
    for t in result["trials"]:
        mark = " *" if t["run"] == result["best_trial"] else ""
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        table.add_row(t["run"] + mark, t["status"], _num(t["value"], ".4f"), params)
    console.print(table)
    console.print(f"[green]best[/]: {result['best_trial']} {result['monitor']} {result['best_value']:.4f}; "
                  f"config saved to {result['best_config']}", highlight=False)


def _mean_std(row: dict, key: str) -> str:
    std = row.get(f"{key}_std")
    return _num(row[key], ".4f") + (f" ± {std:.4f}" if std is not None else "")


def compare(
    dataset: str = typer.Argument(..., help="Dataset name."),
    models: str = typer.Option(..., "--models", help="Backbones, comma separated, e.g. custom_cnn,resnet50,vgg16,mobilenet_v2."),
    name: Optional[str] = typer.Option(None, help="Comparison name (default: DATASET-compare, numbered)."),
    size: Optional[int] = typer.Option(None, help="Input side for every model (default: the first model's)."),
    epochs: Optional[int] = typer.Option(None, help="Fine-tune epochs (phase 2; 0 skips it)."),
    probe_epochs: Optional[int] = typer.Option(None, "--probe-epochs", help="Head-only epochs (phase 1; 0 skips it)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of options: the one recipe every model gets."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Train every model from scratch."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    seeds: int = typer.Option(1, "--seeds", min=1, max=20, help="Train each model this many times (seeds 0, 1, ...) "
                              "and report the mean ± standard deviation: results move between runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the leaderboard as JSON on stdout."),
) -> None:
    """Train several backbones with one recipe (same input size, head, loss and optimiser) and rank them.

    The leaderboard: top-1 and macro-F1 (test split, else val), parameters, inference images/s
    (forward pass, batch 32, on the training device) and training time. A model that fails is listed
    as failed; the others still run.
    """
    from snapid.train.compare import compare as run_compare

    base = _base_config(config, size=size, finetune_epochs=epochs, probe_epochs=probe_epochs, batch_size=batch_size,
                        device=device, pretrained=False if no_pretrained else None)
    with RichReporter(quiet=as_json) as reporter:
        result = run_compare(dataset, models.split(","), base, workspace=workspace(), engine=engine(), name=name,
                             reporter=reporter, workers=settings().workers, seeds=seeds)
    if as_json:
        emit_json(result)
        return
    split = result["leaderboard"][0]["split"] if result["leaderboard"] else "val"
    table = Table(title=f"{result['comparison']}: {result['size']} px, {split} split, speed on {result['device']}",
                  box=box.SIMPLE_HEAD)
    widest = max((len(r["model"]) for r in result["leaderboard"]), default=5)
    table.add_column("model (best first)", min_width=widest, no_wrap=True)  # the one column that must never be cut
    for col in ("top-1", "macro-F1", "params", "img/s", "train s"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in result["leaderboard"]:
        if r["status"] != "completed":
            table.add_row(r["model"], r["status"], "-", "-", "-", "-")
            continue
        params = f"{r['parameters'] / 1e6:.2f} M" if r["parameters"] else "-"
        table.add_row(r["model"], _mean_std(r, "top1"), _mean_std(r, "macro_f1"), params,
                      _num(r["images_per_s"], ".0f"), _num(r["train_seconds"], ".1f"))
    console.print(table)
    for r in result["leaderboard"]:  # which recipe each row got, and why (a from-scratch model is not probed)
        if r.get("recipe"):
            console.print(f"{r['model']}: {r['recipe']}", markup=False, highlight=False)
    for r in result["leaderboard"]:
        if r["status"] != "completed":
            console.print(f"{r['model']} failed: {r['error']}", style="red", markup=False, highlight=False)
    console.print(f"saved to {result['path']}", markup=False, highlight=False)
    if not any(r["status"] == "completed" for r in result["leaderboard"]):
        raise SnapidError(f"comparison {result['comparison']}: every model failed", code="compare_failed")
