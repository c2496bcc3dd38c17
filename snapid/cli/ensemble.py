"""`snapid ensemble`, `snapid leaderboard` and `snapid report`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from snapid.cli.common import DATASET_VERSION, Split, console, emit_json, engine, workspace
from snapid.errors import SnapidError


class Method(str, Enum):
    soft = "soft"
    weighted = "weighted"


def ensemble(
    runs: list[str] = typer.Argument(..., help="Two or more completed runs of the same dataset version."),
    name: str = typer.Option(..., "--name", help="Name of the new ensemble (letters, digits, '.', '_', '-')."),
    method: Method = typer.Option(Method.soft, help="soft: equal weights; weighted: weights that minimise the validation NLL."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Combine runs into one model that averages their calibrated probabilities.

    The ensemble is calibrated, evaluated on the test split, and can then be exported and served like a
    single run."""
    from snapid.evaluate.ensemble import create_ensemble

    with console.status(f"building ensemble {name} from {len(runs)} runs", spinner="dots"):
        result = create_ensemble(list(runs), name=name, method=method.value, workspace=workspace(), engine=engine())
    if as_json:
        emit_json(result)
        return
    for member, weight, temperature in zip(result["members"], result["weights"], result["temperatures"]):
        typer.echo(f"  {member:<32} weight {weight:.3f}  temperature {temperature:.3f}")
    typer.echo(f"{result['name']}: test top-1 {result['top1']:.4f}  macro-F1 {result['macro_f1']:.4f}  "
               f"ECE {result['ece']:.4f}  ({result['n']} images)")


def leaderboard(
    dataset: str = typer.Argument(..., help="Dataset name."),
    split: Split = typer.Option(Split.test, help="Split the runs were evaluated on."),
    version: Optional[int] = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Rank the runs and ensembles of one dataset version by top-1.

    Each row shows its gap to the best with a 95% paired bootstrap interval over the same test items:
    "not significant" when the interval contains 0."""
    from snapid.evaluate.leaderboard import BOARD_HEADERS, board_table
    from snapid.evaluate.leaderboard import leaderboard as build

    board = build(dataset, engine=engine(), split=split.value, version=version)
    if as_json:
        emit_json(board)
        return
    if not board["rows"]:
        console.print(f"no completed runs on {dataset} v{board['version']}: `snapid train {dataset}`", markup=False)
        return
    table = Table(title=Text(f"{dataset} v{board['version']} · {split.value}"))
    for i, header in enumerate(BOARD_HEADERS):
        table.add_column(header, justify="right" if i in (0, 4, 5, 6, 7, 8) else "left")
    for row in board_table(board):
        table.add_row(*[Text(str(v)) for v in row])   # Text: a run named "[red]x" is shown as typed
    Console(highlight=False).print(table)            # the board is the output: stdout


def report(
    runs: Optional[list[str]] = typer.Argument(None, help="The run or ensemble; with --compare, two or more."),
    compare: bool = typer.Option(False, "--compare", help="Compare the runs given: leaderboard, overlaid curves, one section each."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file: .html, or .pdf (printed by headless Chromium); "
                                       "default $SNAPID_HOME/reports/RUN.html."),
    split: Optional[Split] = typer.Option(None, help="Split to report on, evaluated first if needed (default: test, "
                                          "or val when the dataset has no test photos)."),
) -> None:
    """Write one self-contained HTML (or PDF) report of a run, an ensemble or a comparison.

    Sections: dataset, training curves, metrics, per-class table, confusion, calibration,
    accuracy-coverage and a mistakes gallery; with --compare, a leaderboard and overlaid curves too."""
    names = list(runs or [])
    if compare and len(names) < 2:
        raise SnapidError(f"--compare needs two or more runs, got {len(names)}", code="usage")
    if not compare and len(names) != 1:
        raise SnapidError(f"give one RUN (got {len(names)}), or --compare RUN RUN ...", code="usage")
    from snapid.cli.evaluate import pick_split
    from snapid.run_report import write_report

    chosen = pick_split(names[0], split)
    out = out or workspace().reports / f"{'-vs-'.join(names)[:120]}.html"
    with console.status(f"writing the report to {out}", spinner="dots"):
        path = write_report(names, out, workspace=workspace(), engine=engine(), split=chosen)
    console.print(f"report written to {path}", markup=False, highlight=False)
