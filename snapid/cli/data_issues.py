"""`snapid data issues DATASET` (suspected label errors, outliers, near-duplicates with different labels) and
`snapid data relabel DATASET DECISIONS.csv` (accepted decisions become a new dataset version)."""

from __future__ import annotations

from pathlib import Path

import typer

from snapid.cli.common import DATASET_VERSION, console, emit_json, engine, progress_bar, settings, workspace


def issues(
    dataset: str = typer.Argument(..., help="Dataset name."),
    run: str | None = typer.Option(None, "--run", help="Use this trained run's backbone (its weights and input size) "
                                      "and its dataset version; default: a pretrained backbone on the latest version."),
    model: str | None = typer.Option(None, "--model", help="Pretrained backbone when there is no --run (default: the "
                                        "most accurate one with weights here, as `snapid train` plans)."),
    size: int | None = typer.Option(None, "--size", min=32, max=1024,
                                    help="Input side in pixels (default: the backbone's)."),
    version: int | None = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
    folds: int = typer.Option(5, "--folds", min=2, max=20, help="Folds of the out-of-fold probabilities."),
    similarity: float = typer.Option(0.97, "--similarity", min=0.5, max=1.0,
                                     help="Cosine similarity of features from which two photos are near-duplicates."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    html: Path | None = typer.Option(None, "--html", help="Write the gallery here (default: "
                                        "<workspace>/reports/DATASET-issues.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print every finding as JSON on stdout."),
) -> None:
    """Suspected label errors (confident learning on out-of-fold probabilities), outliers and near-duplicates
    that carry different labels, from the probe's backbone features; an HTML gallery with one-click decisions."""
    from snapid.evaluate.label_issues import find_issues

    s = settings()
    html_path = html or (workspace().reports / f"{dataset}-issues.html")
    with progress_bar(f"features of {dataset}", quiet=as_json) as progress:
        result = find_issues(dataset, workspace=workspace(), engine=engine(), run=run, model=model, size=size,
                             version=version, folds=folds, similarity=similarity, device=device, workers=s.workers,
                             html=html_path, progress=progress)
    if as_json:
        emit_json(result)
        return
    confident = sum(r["confident"] for r in result["label_issues"])
    console.print(f"{result['dataset']} v{result['version']}: {result['images']} train + val images, "
                  f"out-of-fold top-1 {result['out_of_fold_top1']:.3f}; {len(result['label_issues'])} suspected label "
                  f"errors ({confident} flagged by confident learning), {len(result['outliers'])} outliers, "
                  f"{len(result['conflicts'])} near-duplicate pairs with different labels; gallery: {html_path}",
                  markup=False)
    for row in result["label_issues"][:10]:
        console.print(f"  #{row['rank']} {row['path']}: {row['given']} → {row['suggested']} (score {row['score']:.3f})",
                      markup=False)
    if result["label_issues"]:
        console.print(f"  review them in the gallery, then `snapid data relabel {dataset} decisions.csv`", markup=False)


def relabel(
    dataset: str = typer.Argument(..., help="Dataset name: its latest version gets the decisions."),
    decisions: Path = typer.Argument(..., help="CSV with path, action (relabel, drop, keep) and label columns, "
                                     "as the `snapid data issues` gallery copies them."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Apply reviewed decisions (relabel, drop) as a new version of DATASET; the old version stays as it was.
    A bad row refuses the whole file and nothing is written."""
    from snapid.relabel import relabel as apply

    result = apply(dataset, decisions, engine=engine())
    if as_json:
        emit_json(result)
        return
    if result["version"] is None:
        console.print(f"{dataset}: nothing to change ({result['kept']} kept, {result['unchanged']} unchanged)",
                      markup=False)
        return
    console.print(f"{dataset} v{result['version']}: {result['relabelled']} relabelled, {result['dropped']} dropped, "
                  f"{result['kept']} kept (from v{result['from_version']}, which stays as it was)", markup=False)
