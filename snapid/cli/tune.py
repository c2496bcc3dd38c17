"""`snapid tune`: an Optuna sweep over one recipe's options."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from snapid.cli.common import console, emit_json, engine, number, settings, train_config, workspace
from snapid.cli.train import RichReporter
from snapid.errors import SnapidError


def tune(
    dataset: str = typer.Argument(..., help="Dataset name."),
    trials: int | None = typer.Option(None, "--trials", help="Number of trials (default 20; a grid: its size)."),
    space: Path | None = typer.Option(None, "--space", help="YAML search space (see docs/training.md); "
                                      "default: probe_lr, weight_decay, dropout, label_smoothing, augment."),
    name: str | None = typer.Option(None, help="Sweep name (default: DATASET-tune, numbered)."),
    model: str | None = typer.Option(None, help="Backbone (see `snapid weights list`)."),
    epochs: int | None = typer.Option(None, help="Fine-tune epochs per trial (phase 2; 0 skips it)."),
    probe_epochs: int | None = typer.Option(None, "--probe-epochs", help="Head-only epochs per trial (phase 1)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    config: Path | None = typer.Option(None, "--config", help="YAML file of fixed options; the space varies the rest."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Train from scratch (no ImageNet weights)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, help="Sampler seed (the same seed proposes the same trials)."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep summary as JSON on stdout."),
) -> None:
    """Search training options with Optuna (TPE, or a grid); bad trials stop early by the median rule.

    Every trial is a tracked run named SWEEP-tK; the best trial's config is saved as
    runs/SWEEP/best.yaml, ready for `snapid train DATASET --config runs/SWEEP/best.yaml`.
    """
    from snapid.train.tune import load_space
    from snapid.train.tune import tune as run_tune

    base = train_config(config, model=model, finetune_epochs=epochs, probe_epochs=probe_epochs, batch_size=batch_size,
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
        table.add_row(t["run"] + mark, t["status"], number(t["value"], ".4f"), params)
    console.print(table)
    console.print(f"[green]best[/]: {result['best_trial']} {result['monitor']} {result['best_value']:.4f}; "
                  f"config saved to {result['best_config']}", highlight=False)
