"""`snapid leaderboard`: rank the runs and ensembles of one dataset version."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from snapid.cli.common import DATASET_VERSION, Split, console, emit_json, engine


def leaderboard(
    dataset: str = typer.Argument(..., help="Dataset name."),
    split: Split = typer.Option(Split.test, help="Split the runs were evaluated on."),
    version: int | None = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
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
