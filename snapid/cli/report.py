"""`snapid report`: one self-contained HTML or PDF report of a run, an ensemble or a comparison."""

from __future__ import annotations

from pathlib import Path

import typer

from snapid.cli.common import Split, console, engine, workspace
from snapid.errors import SnapidError


def report(
    runs: list[str] | None = typer.Argument(None, help="The run or ensemble; with --compare, two or more."),
    compare: bool = typer.Option(False, "--compare",
                                 help="Compare the runs given: leaderboard, overlaid curves, one section each."),
    out: Path | None = typer.Option(None, "--out", help="Output file: .html, or .pdf (printed by headless Chromium); "
                                    "default $SNAPID_HOME/reports/RUN.html."),
    split: Split | None = typer.Option(None, help="Split to report on, evaluated first if needed (default: test, "
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
