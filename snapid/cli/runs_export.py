"""`snapid runs export RUN... --tensorboard DIR | --mlflow URI`: runs where people already look (issue 22)."""

from __future__ import annotations

from pathlib import Path

import typer

from snapid.cli.common import console, emit_json, engine
from snapid.errors import UsageError


def export(
    runs: list[str] = typer.Argument(..., help="Run names (`snapid runs list`)."),
    tensorboard: Path | None = typer.Option(None, "--tensorboard", help="Write TensorBoard event files to DIR/RUN/ "
                                            "(`tensorboard --logdir DIR`); an earlier export there is replaced."),
    mlflow: str | None = typer.Option(None, "--mlflow", help="Log to this MLflow tracking URI: a server "
                                      "(http://...), a database (sqlite:///mlflow.db) or a local store (file:///...); "
                                      "an earlier export of the run is replaced. Needs the mlflow extra."),
    experiment: str | None = typer.Option(None, "--experiment",
                                          help="MLflow experiment to log to (default: the run's dataset)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Export runs to TensorBoard or MLflow: the config, every epoch's losses, accuracies and learning rate,
    the stored evaluations with their confusion matrix, and (MLflow) the exported bundle."""
    if tensorboard is None and mlflow is None:
        raise UsageError("say where to: --tensorboard DIR, --mlflow URI, or both")
    if experiment is not None and mlflow is None:
        raise UsageError("--experiment is an MLflow experiment: give --mlflow URI too")
    from snapid.run_export import to_mlflow, to_tensorboard

    done: dict[str, list[dict]] = {}
    if tensorboard is not None:
        done["tensorboard"] = to_tensorboard(runs, tensorboard, engine=engine())
    if mlflow is not None:
        done["mlflow"] = to_mlflow(runs, mlflow, engine=engine(), experiment=experiment)
    if as_json:
        emit_json(done)
        return
    for r in done.get("tensorboard", []):
        console.print(f"[green]{'replaced' if r['replaced'] else 'wrote'}[/] {r['run']}: {r['scalars']} scalars, "
                      f"evaluations {', '.join(r['evaluations']) or 'none'}, confusion images {r['images']} → "
                      f"{r['folder']}", highlight=False)
    for r in done.get("mlflow", []):
        again = f" (replacing {len(r['replaced'])} earlier)" if r["replaced"] else ""
        console.print(f"[green]logged[/] {r['run']} to MLflow experiment {r['experiment']!r} as run "
                      f"{r['mlflow_run_id']}{again}: {r['params']} params, {r['metrics']} metric points, evaluations "
                      f"{', '.join(r['evaluations']) or 'none'}, bundle {r['bundle'] or 'none (snapid export RUN)'}",
                      highlight=False)
    if tensorboard is not None:
        console.print(f"see them with: tensorboard --logdir {tensorboard}", markup=False, highlight=False)
