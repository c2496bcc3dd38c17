"""`snapid` command line: one small module per command group, each command a thin wrapper."""

from __future__ import annotations

import sys

import typer

from snapid import __version__
from snapid.cli import data as data_cli
from snapid.cli import demo as demo_cli
from snapid.cli import detect as detect_cli
from snapid.cli import ensemble as ensemble_cli
from snapid.cli import evaluate as evaluate_cli
from snapid.cli import export as export_cli
from snapid.cli import feedback as feedback_cli
from snapid.cli import knowledge as knowledge_cli
from snapid.cli import predict as predict_cli
from snapid.cli import train as train_cli
from snapid.cli import serve as serve_cli
from snapid.cli import tune as tune_cli
from snapid.cli import weights as weights_cli
from snapid.cli.common import console
from snapid.errors import SnapidError

app = typer.Typer(
    name="snapid",
    help="Turn your own labelled photos into an image-identification web service.\n\n"
    "Workspace: $SNAPID_HOME (default ./snapid-home); database: $SNAPID_DB_URL (default SQLite in the workspace).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cli.app, name="data")
app.command("demo")(demo_cli.demo)
app.command("train")(train_cli.train)
app.add_typer(train_cli.runs_app, name="runs")
app.add_typer(weights_cli.app, name="weights")
app.add_typer(knowledge_cli.app, name="knowledge")
app.command("tune")(tune_cli.tune)
app.command("compare")(tune_cli.compare)
app.command("export")(export_cli.export)
app.command("serve")(serve_cli.serve)
app.command("predict")(predict_cli.predict)
app.command("eval")(evaluate_cli.evaluate)
app.command("ensemble")(ensemble_cli.ensemble)
app.command("leaderboard")(ensemble_cli.leaderboard)
app.command("report")(ensemble_cli.report)
app.add_typer(feedback_cli.app, name="feedback")
app.add_typer(detect_cli.app, name="detect")
data_cli.app.command("merge-feedback")(feedback_cli.merge_feedback)
app.command("promote")(feedback_cli.promote)


@app.command()
def version() -> None:
    """Print snapid's version."""
    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except SnapidError as exc:
        console.print(f"error: {exc.message}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted; nothing half-written was kept")
        sys.exit(130)
