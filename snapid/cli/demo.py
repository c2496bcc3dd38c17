"""`snapid demo`: the whole pipeline that exists so far, on generated pill photos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from snapid.cli.common import console, engine, progress_bar, settings, workspace

DEMO_NAME = "pills-demo"


def demo(
    out: Optional[Path] = typer.Option(None, help="Where to generate the demo photos (default: $SNAPID_HOME/demo-data)."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same photos."),
    per_class: int = typer.Option(40, help="Single-pill photos per pill kind."),
    multi: int = typer.Option(60, help="Photos with several pills."),
) -> None:
    """Generate a synthetic pill dataset (AI-Hub layout), then import, inspect and prepare it."""
    from snapid.data.cache import PrepareParams, prepare
    from snapid.data.demo import generate_demo
    from snapid.data.importer import import_dataset
    from snapid.data.inspect import inspect_manifest, problems
    from snapid.data.report import write_report
    from snapid.track import crud
    from snapid.track.db import transaction

    ws, s = workspace(), settings()
    root = out or ws.demo_data
    with progress_bar("1/4 generating pill photos") as progress:
        info = generate_demo(root, seed=seed, per_class=per_class, multi=multi, progress=progress)
    console.print(f"1/4 demo photos: {info.root}", markup=False)

    with progress_bar("2/4 importing") as progress:
        report = import_dataset(info.root, name=DEMO_NAME, engine=engine(), fmt="aihub", seed=seed,
                                workers=s.workers, progress=progress)
    console.print(f"2/4 imported {report.name} v{report.version}: {report.images} images, {report.classes} classes, "
                  f"splits {report.splits}", markup=False)

    with transaction(engine()) as session:
        manifest = crud.load_manifest(session, name=DEMO_NAME)
    findings = inspect_manifest(manifest)
    html = ws.reports / f"{DEMO_NAME}-inspect.html"
    write_report(findings, html_path=html)
    console.print(f"3/4 inspected: {len(problems(findings))} problems; report {html}", markup=False)

    with progress_bar("4/4 preparing crops") as progress:
        prepared = prepare(manifest, ws, PrepareParams(size=128, crop_boxes=True, pad=0.15), workers=s.workers, progress=progress)
    console.print(f"4/4 prepared {prepared.items} pill crops {prepared.splits} in {prepared.cache_dir}", markup=False)
    console.print("[green]demo done[/]: next, `snapid data inspect pills-demo --html report.html` to read the data report")
