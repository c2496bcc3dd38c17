"""`snapid add-class BUNDLE NAME PHOTO...`: a new class from 5-20 photos, without retraining."""

from __future__ import annotations

from pathlib import Path

import typer

from snapid.cli.common import console, emit_json


def add_class(
    bundle: Path = typer.Argument(..., help="The bundle folder (`snapid export`); rewritten in place as a new version, "
                                  "so a server watching it hot-swaps."),
    name: str = typer.Argument(..., help="The new class's name (refused if the bundle already has it)."),
    photos: list[Path] = typer.Argument(..., help="5 to 20 photos of the new class."),
    out: Path | None = typer.Option(None, "--out", help="Write the new version here instead of over BUNDLE."),
    as_json: bool = typer.Option(False, "--json", help="Print the new bundle's manifest as JSON on stdout."),
) -> None:
    """Add a class to a bundle from a few photos, no retraining: the photos' mean embedding (the bundle's own
    graph, serving's preprocessing) becomes one more row of the linear head. card.md and manifest.json record
    the class and the sha256 of each photo; calibration stays."""
    from snapid.export.add_class import add_class as add

    new = add(bundle, name, photos, out=out)
    if as_json:
        emit_json({"path": str(new.path), "sha256": new.sha256, **new.manifest})
        return
    entry = new.manifest["added_classes"][-1]
    console.print(f"[green]bundle[/] {new.path}  version {new.version}  sha256 {new.sha256[:12]}", highlight=False)
    console.print(f"  class {entry['index']} {entry['name']!r} (id {entry['id']}) from {len(entry['photos'])} photos; "
                  f"it wins {entry['wins_own_photos']} of them", highlight=False)
