"""`snapid data export DATASET --format ... --out DIR`: a stored dataset version in a standard layout."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from snapid.cli.common import DATASET_VERSION, Split, console, emit_json, engine, progress_bar


class LayoutFormat(str, Enum):
    folder = "folder"
    csv = "csv"
    coco = "coco"
    yolo = "yolo"
    voc = "voc"


def export(
    name: str = typer.Argument(..., help="Dataset name (`snapid data list`)."),
    fmt: LayoutFormat = typer.Option(..., "--format", help="The layout to write (README, \"Exporting a dataset\"); "
                                     "folder keeps one label per image, the others boxes too."),
    out: Path = typer.Option(..., "--out", help="A new (or empty) folder to write; it appears only when complete."),
    split: Split | None = typer.Option(None, "--split", help="Only this split (default: all three)."),
    version: int | None = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
    link: bool = typer.Option(False, "--link", help="Hard-link the images instead of copying them when they are "
                              "unchanged and on the same file system (the export then shares the files)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON on stdout."),
) -> None:
    """Write a dataset version (labels, splits and boxes) in a standard layout for Ultralytics, Roboflow,
    Label Studio or another snapid; `snapid data import OUT` reads it back."""
    from snapid.data.export_layouts import export_dataset
    from snapid.track import datasets as dataset_store
    from snapid.track.db import transaction

    with transaction(engine()) as session:
        manifest = dataset_store.load_manifest(session, name=name, version=version)
    with progress_bar(f"exporting {name} v{manifest.version} as {fmt.value}", quiet=as_json) as progress:
        report = export_dataset(manifest, out, fmt=fmt.value, splits=[split.value] if split else None, link=link,
                                progress=progress)
    if as_json:
        emit_json(report.as_dict())
        return
    console.print(f"[green]exported[/] {report.dataset} v{report.version} as {report.format}: {report.images} images, "
                  f"{report.boxes} boxes, {report.classes} classes, splits {report.splits}; {report.out}",
                  highlight=False)
    for reason, n in report.skipped.items():
        console.print(f"  left out {n}: {reason}", style="yellow", markup=False)
    for note in report.notes:
        console.print(f"  note: {note}", markup=False)
