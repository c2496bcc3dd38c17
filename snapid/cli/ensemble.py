"""`snapid ensemble`: combine completed runs into one calibrated model."""

from __future__ import annotations

from enum import Enum

import typer

from snapid.cli.common import console, emit_json, engine, workspace


class Method(str, Enum):
    soft = "soft"
    weighted = "weighted"


def ensemble(
    runs: list[str] = typer.Argument(..., help="Two or more completed runs of the same dataset version."),
    name: str = typer.Option(..., "--name", help="Name of the new ensemble (letters, digits, '.', '_', '-')."),
    method: Method = typer.Option(Method.soft,
                                  help="soft: equal weights; weighted: weights that minimise the validation NLL."),
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
    for member, weight, temperature in zip(result["members"], result["weights"], result["temperatures"], strict=True):
        typer.echo(f"  {member:<32} weight {weight:.3f}  temperature {temperature:.3f}")
    typer.echo(f"{result['name']}: test top-1 {result['top1']:.4f}  macro-F1 {result['macro_f1']:.4f}  "
               f"ECE {result['ece']:.4f}  ({result['n']} images)")
