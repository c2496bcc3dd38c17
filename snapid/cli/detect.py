"""`snapid detect train | eval | compare`: object detection and the detect → crop → classify experiment."""

from __future__ import annotations

import typer
from rich.table import Table

from snapid.cli.common import Split, console, emit_json, engine, progress_bar, workspace
from snapid.cli.train import RichReporter
from snapid.errors import SnapidError

app = typer.Typer(help="Object detectors: train on box annotations, evaluate (mAP), compare detect → crop.",
                  no_args_is_help=True)


class DetectReporter(RichReporter):
    """The classification progress bar, with detection's epoch line (mAP instead of top-k)."""

    def epoch(self, r: dict) -> None:
        if self.quiet:
            return
        mark = " *" if r.get("best") else ""
        console.print(f"epoch {r['epoch']:>3} loss {r['train_loss']:.4f}  val_loss {r['val_loss']:.4f}  "
                      f"mAP@0.5 {r['map50']:.4f}  mAP {r['map']:.4f}  lr {r['lr']:.2e}  {r['seconds']:.1f}s  "
                      f"{r['images_per_s']:.1f} img/s{mark}", markup=False, highlight=False)


@app.command("train")
def train(
    dataset: str | None = typer.Argument(None, help="Dataset with boxes (not needed with --resume)."),
    model: str = typer.Option("fasterrcnn_mobilenet_v2", help="fasterrcnn_mobilenet_v2, retinanet_mobilenet_v2, "
                              "fcos_mobilenet_v2, ssdlite_mobilenet_v2 (lighter, two scales), or "
                              "fasterrcnn_mobilenet_v2_s16 (experimental: stride 16, for small objects)."),
    class_agnostic: bool = typer.Option(True, "--class-agnostic/--per-class",
                                        help="One 'object' class (a classifier follows), or one per label."),
    size: int = typer.Option(320, help="Input side: photos are letterboxed to SIZE x SIZE."),
    epochs: int | None = typer.Option(None, help="Most epochs, default 12 (early stopping may end sooner); "
                                                 "with --resume, the run's new epoch budget."),
    batch_size: int = typer.Option(4, "--batch-size", help="Photos per step."),
    lr: float = typer.Option(0.02, help="Peak SGD learning rate (warm-up, then cosine)."),
    patience: int = typer.Option(4, help="Stop after this many epochs without a better val mAP@0.5."),
    augment: str = typer.Option("light", help="none, light or medium (flip, scale, colour)."),
    pad: float = typer.Option(0.1, help="Crop padding of the paired classifier (`snapid data prepare --pad`)."),
    no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Backbone from scratch (no ImageNet weights)."),
    name: str | None = typer.Option(None, help="Run name (default: DATASET-detect-ARCH, numbered)."),
    resume: str | None = typer.Option(None, help="Continue a stopped or crashed detector run (a completed "
                                                 "one with --epochs above the epochs it did)."),
    seed: int = typer.Option(0, help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout."),
) -> None:
    """Train an object detector; every epoch is tracked (`snapid runs show RUN`), Ctrl-C stops cleanly."""
    from snapid.detect.train import train_detector

    if not dataset and not resume:
        raise SnapidError("give a DATASET to train on, or --resume RUN", code="usage")
    with DetectReporter(quiet=as_json) as reporter:
        summary = train_detector(dataset or "", workspace=workspace(), engine=engine(), arch=model, size=size,
                                 epochs=epochs, batch_size=batch_size, lr=lr, class_agnostic=class_agnostic,
                                 patience=patience, name=name, resume=resume, reporter=reporter, augment=augment,
                                 pretrained=not no_pretrained, pad=pad, seed=seed)
    if as_json:
        emit_json(summary)
        return
    figures = "  ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float))
    console.print(f"[green]done[/]: {summary['name']}, best epoch {summary['best_epoch']}  {figures}")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@app.command("eval")
def evaluate(
    run: str = typer.Argument(..., help="Detector run name."),
    split: Split = typer.Option(Split.test, help="The split to score."),
    score_threshold: float | None = typer.Option(None, "--score-threshold",
                                                 help="For precision/recall (default: the run's, 0.5)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON on stdout."),
) -> None:
    """mAP@0.5, mAP@0.5:0.95, precision and recall per class; stored as detect-eval-SPLIT.json in the run."""
    split = split.value
    from snapid.detect.evaluate import evaluate_detector

    result = evaluate_detector(run, workspace=workspace(), engine=engine(), split=split,
                               score_threshold=score_threshold)
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"{run} on {split}: {result['n']} photos, {result['objects']} objects, "
                        f"score >= {result['score_threshold']}")
    for column in ("class", "AP@0.5", "AP@0.5:0.95", "precision", "recall", "tp", "fp", "fn"):
        table.add_column(column, justify="left" if column == "class" else "right")
    rows = [(c, result["per_class_ap50"][c], result["per_class_ap"][c], result["at_threshold"]["per_class"][c])
            for c in result["classes"]]
    rows.append(("all", result["map50"], result["map"], result["at_threshold"]["overall"]))
    for c, ap50, ap, pr in rows:
        table.add_row(c, _pct(ap50), _pct(ap), _pct(pr["precision"]), _pct(pr["recall"]),
                      str(pr["tp"]), str(pr["fp"]), str(pr["fn"]))
    console.print(table)


@app.command("compare")
def compare(
    dataset: str = typer.Argument(..., help="Dataset with boxes (its test split is used)."),
    classifier: str = typer.Option(..., "--classifier", help="Classifier run."),
    detector: str = typer.Option(..., "--detector", help="Detector run."),
    split: Split = typer.Option(Split.test, help="The split to score."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Classification accuracy on whole photos vs on the detector's crops (and on ground-truth crops)."""
    split = split.value
    from snapid.detect.compare import compare_two_stage

    with progress_bar("detect → crop → classify", quiet=as_json) as update:
        result = compare_two_stage(dataset, classifier=classifier, detector=detector, workspace=workspace(),
                                   engine=engine(), split=split, progress=update)
    if as_json:
        emit_json(result)
        return
    console.print(compare_table(result))


def compare_table(result: dict) -> Table:
    s, m = result["single"], result["multi"]
    table = Table(title=f"{result['classifier']} with and without {result['detector']} ({result['split']} split)")
    for column in ("photos", "n", "whole photo", "detector crop", "ground-truth crop", "note"):
        table.add_column(column, justify="left" if column in ("photos", "note") else "right")
    table.add_row("one label", str(s["photos"]), _pct(s["whole_top1"]), _pct(s["crop_top1"]), _pct(s["gt_crop_top1"]),
                  f"{s['fallback']} without a box: whole photo used")
    table.add_row("several labels (per object)", str(m["objects"]), _pct(m["whole_top1"]), _pct(m["crop_top1"]),
                  _pct(m["gt_crop_top1"]), f"{_pct(m['detected'])} of objects detected")
    return table
