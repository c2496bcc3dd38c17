"""`snapid eval RUN`: metrics, calibration and the open-set threshold of a run on one split."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from snapid.cli.common import Split, console, emit_json, engine, progress_bar, workspace
from snapid.workspace import atomic_write_text


def evaluate(
    run: str = typer.Argument(..., help="Run (or ensemble) name."),
    split: Split | None = typer.Option(None, help="Split to evaluate (default: test, or val when the dataset has "
                                       "no test photos)."),
    tta: bool = typer.Option(False, "--tta", help="Average each image with its horizontal mirror."),
    target_accuracy: float | None = typer.Option(
        None, "--target-accuracy",
        help="Rejection threshold for this accuracy of the accepted answers (default 0.95)."),
    target_coverage: float | None = typer.Option(
        None, "--target-coverage", help="Rejection threshold that accepts this share of photos instead."),
    recalibrate: bool = typer.Option(False, "--recalibrate",
                                     help="Fit temperature and threshold again on the val split."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON on stdout."),
    out: Path | None = typer.Option(None, "--out", help="Also write the full result as JSON to this file."),
    html_out: Path | None = typer.Option(None, "--html", help="Write an HTML report to this file."),
) -> None:
    """Evaluate a run: top-k, macro top-k, per-class P/R/F1, confusion, calibration (ECE before and
    after temperature scaling), the long tail, the accuracy-coverage curve and the hardest mistakes.

    Calibrates the run on its validation split first if it has not been calibrated; the results are
    stored with the run (eval-SPLIT.json in its folder and in the database)."""
    import json

    from snapid.evaluate.evaluation import evaluate_run

    ws, db = workspace(), engine()
    chosen = pick_split(run, split, quiet=as_json)
    with progress_bar(f"evaluating {run} on {chosen}", quiet=as_json) as update:
        result = evaluate_run(run, workspace=ws, engine=db, split=chosen, tta=tta, recalibrate=recalibrate,
                              target_accuracy=target_accuracy, target_coverage=target_coverage, progress=update)
    if out:
        atomic_write_text(Path(out), json.dumps(result, ensure_ascii=False, indent=1))
    if as_json:
        emit_json(result)
    else:
        console.print(headline_table(result))
        for line in calibration_notes(result["calibration"]):
            console.print(f"note: {line}", markup=False, highlight=False)
        if out:
            console.print(f"results written to {out}", markup=False, highlight=False)
    if html_out:
        from snapid.run_report import write_report

        write_report([run], html_out, workspace=ws, engine=db, split=chosen)
        if not as_json:
            console.print(f"report written to {html_out}", markup=False, highlight=False)


def pick_split(run: str, split: Split | None, *, quiet: bool = False) -> str:
    """The asked split, or the held-out one the run's dataset has (saying so when it is not test)."""
    if split is not None:
        return split.value
    from snapid.evaluate.evaluation import held_out_split

    chosen, note = held_out_split(run, engine=engine())
    if note and not quiet:
        console.print(f"note: {note}", markup=False, highlight=False)
    return chosen


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def headline_table(result: dict) -> Table:
    table = Table(title=f"{result['run']} on {result['split']} ({result['n']} "
                        f"photos{', TTA' if result['tta'] else ''})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("top1", "top5", "macro_top1", "macro_top5", "macro_f1", "balanced_accuracy"):
        table.add_row(key, _fmt(result.get(key)))
    table.add_row("ECE (before → after calibration)", f"{_fmt(result.get('ece_uncalibrated'))} → "
                                                      f"{_fmt(result.get('ece'))}")
    table.add_row("temperature", _fmt(result.get("temperature"), 3))
    coverage, accuracy = result.get("coverage_at_threshold"), result.get("accuracy_at_threshold")
    table.add_row("rejection threshold", _fmt(result.get("threshold"), 3))
    table.add_row("  coverage / accuracy of accepted", f"{_fmt(coverage, 3)} / {_fmt(accuracy, 3)}")
    table.add_row("latency (1 image, CPU)", f"{_fmt(result.get('latency_ms'), 1)} ms")
    table.add_row("parameters", f"{result.get('parameters', 0):,}")
    return table


def calibration_notes(calibration: dict) -> list[str]:
    notes = [calibration["note"]] if calibration.get("note") else []
    if calibration.get("target_met") is False:
        notes.append(f"no threshold reaches {calibration['target_accuracy']:.0%} accuracy on the validation split, so "
                     "nearly every photo would be answered \"unknown\"; lower --target-accuracy or use "
                     "--target-coverage")
    return notes
