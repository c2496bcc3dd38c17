"""`snapid train` and `snapid runs ...`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from snapid.cli.common import DATASET_VERSION, console, emit_json, engine, settings, workspace
from snapid.errors import SnapidError
from snapid.train.progress import Reporter


class RichReporter(Reporter):
    """Progress bar with ETA and images/s on a terminal; one line per epoch everywhere."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[speed]}"), console=console, transient=True)
        self.task = None

    def __enter__(self):
        if not self.quiet and console.is_terminal:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def phase(self, title: str, total: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(title, total=total, speed="")

    def progress(self, done: int, total: int, images_per_s: float | None = None) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=done, total=total,
                            speed=f"{images_per_s:.0f} img/s" if images_per_s else "")

    def epoch(self, r: dict) -> None:
        if self.quiet:
            return
        mark = " *" if r.get("best") else ""
        console.print(f"epoch {r['epoch']:>3} {r['phase']:<8} loss {r['train_loss']:.4f}  "
                      f"val_loss {r['val_loss']:.4f}  top1 {r['top1']:.4f}  top5 {r['top5']:.4f}  "
                      f"macro_f1 {r['macro_f1']:.4f}  lr {r['lr']:.2e}  {r['seconds']:.1f}s  "
                      f"{r['images_per_s']:.0f} img/s{mark}", markup=False, highlight=False)

    def note(self, text: str) -> None:
        if not self.quiet:
            console.print(f"note: {text}", markup=False)


def train(
    dataset: str | None = typer.Argument(None, help="Dataset name (not needed with --resume)."),
    model: str | None = typer.Option(None, help="Backbone (see `snapid weights list`), or two joined by + to fuse "
                                     "their features; default auto: the most accurate one the budget affords."),
    budget: str | None = typer.Option(None, help="Wall time for the run, e.g. 90s, 10m, 1h: the recipe is planned "
                                      "to fit it on this machine, and printed first (default 10m; 'none': no limit)."),
    epochs: int | None = typer.Option(None, help="Fine-tune epochs (phase 2; 0 skips it)."),
    probe_epochs: int | None = typer.Option(None, "--probe-epochs",
                                            help="Head-only epochs on cached features (phase 1; 0 skips it)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    optimizer: str | None = typer.Option(None, help="adamw (default), sgd or rmsprop: fine-tuning and AdamW-style "
                                         "probe epochs (momentum, alpha and lr in --config)."),
    augment: str | None = typer.Option(None, help="A preset: none, light, medium (default) or heavy; or operations "
                                       "separated by commas, NAME or NAME=VALUE (a range LOW:HIGH), from: hflip, "
                                       "vflip, rotate, translate, scale, shear, crop, blur, color_jitter, grayscale, "
                                       "erase; e.g. hflip,vflip,rotate=20,scale=0.8:1.2,blur=3 (docs/training.md)."),
    config: Path | None = typer.Option(None, "--config",
                                       help="YAML file of options (see docs/training.md); flags override it."),
    name: str | None = typer.Option(None, help="Run name (default: DATASET-MODEL, numbered)."),
    resume: str | None = typer.Option(None, help="Continue a stopped or crashed run from its last checkpoint."),
    version: int | None = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
    weights: Path | None = typer.Option(None, help="Local pretrained weights (.safetensors or .pth state_dict)."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Train from scratch (no ImageNet weights)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    seed: int | None = typer.Option(None, help="Random seed."),
    seeds: int = typer.Option(1, "--seeds", min=1, max=20, help="Train this many runs (seeds SEED, SEED+1, ...) and "
                              "report the mean ± standard deviation of test top-1 and macro-F1."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout."),
) -> None:
    """Train a classifier on a prepared dataset: frozen-backbone probe, then fine-tuning.

    Every epoch is written to the workspace database as it ends (`snapid runs show RUN`).
    Ctrl-C stops cleanly; `--resume RUN` continues where it stopped.
    """
    from snapid.pipeline import train_calibrated
    from snapid.train.augment import augment_from_flag
    from snapid.train.config import TrainConfig

    if not dataset and not resume:
        raise SnapidError("give a DATASET to train on, or --resume RUN", code="usage")
    overrides = {"model": model, "budget": budget, "finetune_epochs": epochs, "probe_epochs": probe_epochs,
                 "batch_size": batch_size, "optimizer": optimizer,
                 "augment": augment_from_flag(augment) if augment else None, "weights": weights, "device": device,
                 "seed": seed, "pretrained": False if no_pretrained else None}
    cfg = TrainConfig.load(config, overrides)
    if seeds > 1:
        if resume:
            raise SnapidError("--seeds starts new runs; resume them one by one with --resume RUN", code="usage")
        _train_seeds(dataset, cfg, seeds, name=name, version=version, as_json=as_json)
        return
    with RichReporter(quiet=as_json) as reporter:
        summary = train_calibrated(dataset or "", cfg, workspace=workspace(), engine=engine(), name=name, resume=resume,
                                   version=version, reporter=reporter, workers=settings().workers)
    if not summary:  # a torchrun worker other than rank 0
        return
    if as_json:
        emit_json(summary)
        return
    _print_done(summary)


def _print_done(summary: dict) -> None:
    from snapid.pipeline import describe_calibration

    figures = "  ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float))
    console.print(f"[green]done[/]: run {summary['name']}, best epoch {summary['best_epoch']}  {figures}",
                  highlight=False)
    console.print(f"  {describe_calibration(summary['calibration'])}", markup=False, highlight=False)
    console.print(f"  run folder: {summary['run_dir']}", markup=False, highlight=False)
    console.print(f"next: `snapid serve {summary['name']}` (the page), `snapid report {summary['name']}` (an HTML "
                  f"report), `snapid export {summary['name']}` (a bundle to ship)", markup=False, highlight=False)


def _train_seeds(dataset: str, cfg, seeds: int, *, name: str | None, version: int | None, as_json: bool) -> None:
    """The same recipe trained with several seeds; the spread says how much of a difference is chance."""
    from snapid.metrics import mean_and_std
    from snapid.pipeline import train_calibrated

    summaries = []
    for k in range(seeds):
        seeded = cfg.model_copy(update={"seed": cfg.seed + k})
        with RichReporter(quiet=as_json) as reporter:
            summaries.append(train_calibrated(dataset, seeded, workspace=workspace(), engine=engine(),
                                              name=f"{name}-s{cfg.seed + k}" if name else None, version=version,
                                              reporter=reporter, workers=settings().workers))
    split = "test" if all("test_top1" in s for s in summaries) else "val"
    spread = {}
    for key in ("top1", "macro_f1"):
        values = [s[f"{split}_{key}"] for s in summaries]
        mean, std = mean_and_std(values)
        spread[key] = {"mean": mean, "std": std, "values": values}
    if as_json:
        emit_json({"split": split, "seeds": seeds, "runs": [s.get("name") for s in summaries], **spread,
                   "summaries": summaries})
        return
    console.print(f"[green]done[/]: {seeds} seeds on the {split} split: top-1 {spread['top1']['mean']:.4f} ± "
                  f"{spread['top1']['std']:.4f}, macro-F1 {spread['macro_f1']['mean']:.4f} ± "
                  f"{spread['macro_f1']['std']:.4f}", highlight=False)


runs_app = typer.Typer(help="Training runs recorded in the workspace database.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    dataset: str | None = typer.Option(None, help="Only runs on this dataset."),
    model: str | None = typer.Option(None, help="Only runs of this backbone."),
    status: str | None = typer.Option(None, help="queued, running, completed, failed or stopped."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List runs, newest first (runs whose process died are marked failed first)."""
    from snapid.track import runs as track
    from snapid.track.db import transaction
    from snapid.train.fit import reap

    reap(engine())
    with transaction(engine()) as s:
        rows = track.list_runs(s, dataset=dataset, model=model, status=status)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no runs yet: `snapid train DATASET`")
    for r in rows:
        best = f"{r['monitor']} {r['best_metric']:.4f}" if r["best_metric"] is not None else "-"
        typer.echo(f"{r['name']:<32} {r['status']:<10} {r['dataset']} v{r['dataset_version']:<3} {r['model']:<20} "
                   f"{best:<22} {r['seconds'] or 0:>7.1f}s")


@runs_app.command("show")
def runs_show(run: str = typer.Argument(..., help="Run name."),
              as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """A run's config, summary, checkpoints and every epoch."""
    from snapid.track import runs as track
    from snapid.track.db import transaction

    with transaction(engine()) as s:
        info = track.get_run(s, name=run)
        info["epochs"] = track.epochs(s, name=run)
        info["artifacts"] = track.artifacts(s, name=run)
    if as_json:
        emit_json(info)
        return
    typer.echo(f"{info['name']}: {info['status']}  {info['dataset']} v{info['dataset_version']}  {info['model']}  "
               f"{info['seconds'] or 0:.1f}s")
    if info["error"]:
        typer.echo(f"  {info['error']}")
    for key, value in info["summary"].items():
        typer.echo(f"  {key}: {value}")
    for e in info["epochs"]:
        typer.echo(f"  epoch {e['epoch']:>3} {e['phase']:<8} loss {e['train_loss'] or 0:.4f} val_loss "
                   f"{e['val_loss'] or 0:.4f} top1 {e['top1'] or 0:.4f} macro_f1 {e['macro_f1'] or 0:.4f}")
