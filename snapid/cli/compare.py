"""`snapid compare`: several backbones trained with one recipe, ranked."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from snapid.cli.common import console, emit_json, engine, number, settings, train_config, workspace
from snapid.cli.train import RichReporter
from snapid.errors import SnapidError


def _mean_std(row: dict, key: str) -> str:
    std = row.get(f"{key}_std")
    return number(row[key], ".4f") + (f" ± {std:.4f}" if std is not None else "")


def compare(
    dataset: str = typer.Argument(..., help="Dataset name."),
    models: str = typer.Option(..., "--models", help="Backbones, comma separated, e.g. "
                                                     "custom_cnn,resnet50,vgg16,mobilenet_v2."),
    name: str | None = typer.Option(None, help="Comparison name (default: DATASET-compare, numbered)."),
    size: int | None = typer.Option(None, help="Input side for every model (default: the first model's)."),
    epochs: int | None = typer.Option(None, help="Fine-tune epochs (phase 2; 0 skips it)."),
    probe_epochs: int | None = typer.Option(None, "--probe-epochs", help="Head-only epochs (phase 1; 0 skips it)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    config: Path | None = typer.Option(None, "--config", help="YAML file of options: the one recipe every model gets."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Train every model from scratch."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
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

    base = train_config(config, size=size, finetune_epochs=epochs, probe_epochs=probe_epochs, batch_size=batch_size,
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
                      number(r["images_per_s"], ".0f"), number(r["train_seconds"], ".1f"))
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
