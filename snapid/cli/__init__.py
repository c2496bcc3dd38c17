"""`snapid` command line: one small module per command group, each command a thin wrapper."""

from __future__ import annotations

import sys

import typer

from snapid import __version__
from snapid.cli import add_class as add_class_cli
from snapid.cli import compare as compare_cli
from snapid.cli import data as data_cli
from snapid.cli import data_export as data_export_cli
from snapid.cli import data_issues as data_issues_cli
from snapid.cli import db as db_cli
from snapid.cli import demo as demo_cli
from snapid.cli import detect as detect_cli
from snapid.cli import ensemble as ensemble_cli
from snapid.cli import evaluate as evaluate_cli
from snapid.cli import export as export_cli
from snapid.cli import feedback as feedback_cli
from snapid.cli import knowledge as knowledge_cli
from snapid.cli import leaderboard as leaderboard_cli
from snapid.cli import predict as predict_cli
from snapid.cli import report as report_cli
from snapid.cli import runs_export as runs_export_cli
from snapid.cli import serve as serve_cli
from snapid.cli import train as train_cli
from snapid.cli import tune as tune_cli
from snapid.cli import up as up_cli
from snapid.cli import weights as weights_cli
from snapid.cli.common import console
from snapid.errors import SnapidError

app = typer.Typer(
    name="snapid",
    help="Turn your own labelled photos into an image-identification web service.\n\n"
    "Start with `snapid up PHOTOS` (one folder per class) or `snapid demo`. "
    "Workspace: $SNAPID_HOME (default ./snapid-home); database: $SNAPID_DB_URL (default SQLite in the workspace).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish and PowerShell
)

# --help lists the commands in pipeline order, one panel per stage
START, DATA, TRAIN, EVALUATE, EXPORT, SERVE, KNOWLEDGE, FEEDBACK = (
    "Start here", "Data", "Train", "Evaluate", "Export", "Serve and predict", "Knowledge", "Feedback")
app.command("up", rich_help_panel=START)(up_cli.up)
app.command("demo", rich_help_panel=START)(demo_cli.demo)
app.add_typer(db_cli.app, name="db", rich_help_panel=START)
app.add_typer(data_cli.app, name="data", rich_help_panel=DATA)
app.add_typer(detect_cli.app, name="detect", rich_help_panel=DATA)
app.command("train", rich_help_panel=TRAIN)(train_cli.train)
app.command("tune", rich_help_panel=TRAIN)(tune_cli.tune)
app.command("compare", rich_help_panel=TRAIN)(compare_cli.compare)
app.add_typer(train_cli.runs_app, name="runs", rich_help_panel=TRAIN)
app.add_typer(weights_cli.app, name="weights", rich_help_panel=TRAIN)
app.command("eval", rich_help_panel=EVALUATE)(evaluate_cli.evaluate)
app.command("report", rich_help_panel=EVALUATE)(report_cli.report)
app.command("leaderboard", rich_help_panel=EVALUATE)(leaderboard_cli.leaderboard)
app.command("ensemble", rich_help_panel=EVALUATE)(ensemble_cli.ensemble)
app.command("export", rich_help_panel=EXPORT)(export_cli.export)
app.command("add-class", rich_help_panel=EXPORT)(add_class_cli.add_class)
app.command("serve", rich_help_panel=SERVE)(serve_cli.serve)
app.command("predict", rich_help_panel=SERVE)(predict_cli.predict)
app.add_typer(knowledge_cli.app, name="knowledge", rich_help_panel=KNOWLEDGE)
app.add_typer(feedback_cli.app, name="feedback", rich_help_panel=FEEDBACK)
app.command("promote", rich_help_panel=FEEDBACK)(feedback_cli.promote)
train_cli.runs_app.command("export")(runs_export_cli.export)
data_cli.app.command("merge-feedback")(feedback_cli.merge_feedback)
data_cli.app.command("issues")(data_issues_cli.issues)
data_cli.app.command("relabel")(data_issues_cli.relabel)
data_cli.app.command("export")(data_export_cli.export)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print snapid's version and exit."),
) -> None:
    """Turn your own labelled photos into an image-identification web service."""


@app.command(rich_help_panel=START)
def version() -> None:
    """Print snapid's version."""
    typer.echo(__version__)


PANELS = (START, DATA, TRAIN, EVALUATE, EXPORT, SERVE, KNOWLEDGE, FEEDBACK)


def command():
    """The click command behind ``app``, its commands in pipeline order (Typer lists groups after commands)."""
    group = typer.main.get_command(app)
    order = {panel: i for i, panel in enumerate(PANELS)}
    group.commands = dict(sorted(group.commands.items(),
                                 key=lambda item: order.get(getattr(item[1], "rich_help_panel", None), len(order))))
    return group


def main() -> None:
    try:
        command()(prog_name="snapid")
    except SnapidError as exc:
        console.print(f"error: {exc.message}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted; nothing half-written was kept")
        sys.exit(130)
    except ModuleNotFoundError as exc:  # a command whose extra is not installed (e.g. training on snapid[serve])
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        console.print(f"error: this command needs {exc.name}, which `pip install 'snapid[{extra}]'` installs",
                      style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


# the optional extras (pyproject.toml) that install each library a command may import
EXTRA_OF = {
    **dict.fromkeys(["torch", "torchvision", "timm", "kornia", "safetensors", "optuna", "onnx", "onnxscript",
                     "torchmetrics", "pycocotools", "cleanlab", "imagehash", "matplotlib", "scipy"], "train"),
    **dict.fromkeys(["onnxruntime", "fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "httpx",
                     "segno", "fastapi_offline", "prometheus_client"], "serve"),
    "psycopg2": "postgres", "tensorboardX": "tensorboard", "mlflow": "mlflow",
}
