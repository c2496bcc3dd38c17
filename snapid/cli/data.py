"""`snapid data ...`: import, list, inspect and prepare datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from snapid.cli.common import (
    DATASET_VERSION,
    ImportFormat,
    Resize,
    console,
    emit_json,
    engine,
    progress_bar,
    settings,
    workspace,
)
from snapid.errors import DatasetError

app = typer.Typer(help="Import, inspect and prepare datasets.", no_args_is_help=True)

FORMAT_HELP = "The layout (docs/datasets.md); auto detects it and says which it chose."


def _parse_columns(spec: str | None) -> dict[str, str]:
    """'path=filename,label=species' → {'path': 'filename', 'label': 'species'}."""
    if not spec:
        return {}
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DatasetError(f"--columns {spec!r}: expected name=column pairs such as path=filename,label=species")
        out[key.strip()] = value.strip()
    return out


@app.command("import")
def import_(
    path: Path = typer.Argument(..., help="Dataset folder, a CSV / JSON / COCO manifest file, or a .zip / .tar(.gz) "
                                "archive (unpacked safely into the workspace)."),
    name: str | None = typer.Option(None, "--name", help="Dataset name in the workspace (default: the folder's or "
                                    "file's name); importing again makes a new version."),
    format: ImportFormat = typer.Option(ImportFormat.auto, "--format", help=FORMAT_HELP),
    columns: str | None = typer.Option(None, help="Header names for CSV/JSON, e.g. 'path=filename,label=species'; "
                                       "column numbers (0-based) for header-less files, e.g. 'path=0,label=1'."),
    no_header: bool = typer.Option(False, "--no-header", help="The CSV has no header row."),
    seed: int = typer.Option(0, help="Seed for the split and for subsampling."),
    max_per_class: int | None = typer.Option(None, "--max-per-class", min=1,
                                             help="Keep at most N images per class (balanced subsample)."),
    clip_boxes: bool = typer.Option(False, "--clip-boxes",
                                    help="Clip boxes that leave the image (and report them) instead of failing."),
    workers: int | None = typer.Option(None, help="Parallel readers (default: the number of cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the import report as JSON on stdout."),
) -> None:
    """Read a dataset into the workspace database as a new version of NAME.

    Every file is read once (sha256, size, colour mode, statistics); unreadable, empty,
    non-image and truncated files are recorded as rejected with a reason. Given splits are
    kept; otherwise a stratified (grouped) 80/10/10 split is made.
    """
    from snapid.data.sources import ReadOptions
    from snapid.images import DecodeLimits
    from snapid.importer import import_dataset
    from snapid.pipeline import default_name

    s = settings()
    name = name or default_name(path)
    options = ReadOptions(columns=_parse_columns(columns), has_header=False if no_header else None)
    limits = DecodeLimits.from_settings(s)
    with progress_bar(f"importing {name}", quiet=as_json) as progress:
        report = import_dataset(path, name=name, engine=engine(), fmt=format.value, options=options, seed=seed,
                                max_per_class=max_per_class, clip_boxes=clip_boxes, workers=workers or s.workers,
                                limits=limits, progress=progress, unpack_to=workspace().unpacked)
    if as_json:
        emit_json(report.as_dict())
        return
    rejected = sum(report.rejected.values())
    console.print(f"[green]imported[/] {report.name} v{report.version}: {report.images} images, {report.classes} "
                  f"classes, splits {report.splits}, {rejected} rejected, {report.reused} unchanged files reused, "
                  f"{report.seconds}s")
    for reason, n in report.rejected.items():
        console.print(f"  rejected {n}: {reason}", markup=False)
    for note in report.notes:
        console.print(f"  note: {note}", markup=False)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the datasets in the workspace (latest version of each)."""
    from snapid.track import datasets as dataset_store
    from snapid.track.db import transaction

    with transaction(engine()) as session:
        rows = dataset_store.list_datasets(session)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no datasets yet: `snapid data import PATH --name NAME` or `snapid demo`")
    for r in rows:
        typer.echo(f"{r['name']}  v{r['version']}  {r['format']}  {r['samples']} images  {r['rejected']} rejected  "
                   f"{r['root']}")


def _load(name: str, version: int | None):
    from snapid.track import datasets as dataset_store
    from snapid.track.db import transaction

    with transaction(engine()) as session:
        return dataset_store.load_manifest(session, name=name, version=version)


@app.command()
def inspect(
    name: str = typer.Argument(..., help="Dataset name."),
    version: int | None = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
    html: Path | None = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
    as_json: bool = typer.Option(False, "--json", help="Print every figure as JSON on stdout."),
    out: Path | None = typer.Option(None, "--out", help="Also write every figure as JSON to this file."),
    strict: bool = typer.Option(False, "--strict",
                                help="Exit non-zero on errors: leakage, broken boxes, too many rejected files."),
    max_rejected: float = typer.Option(0.01, help="Share of rejected files above which --strict fails."),
) -> None:
    """Data-quality report: class balance, sizes, colour modes, duplicates and train/test leakage, boxes."""
    from snapid.data.inspect import inspect_manifest, problems
    from snapid.data.report import write_report

    findings = inspect_manifest(_load(name, version), max_rejected=max_rejected)
    found = problems(findings)
    html_path = html or (workspace().reports / f"{name}-inspect.html")
    write_report(findings, html_path=html_path, json_path=out)
    if as_json:
        emit_json(findings)
        if strict and any(p["severity"] == "error" for p in found):
            raise typer.Exit(1)
        return
    summary = findings["summary"]
    console.print(f"{summary['name']} v{summary['version']}: {summary['samples']} images, {summary['classes']} "
                  f"classes; report: {html_path}", markup=False)
    for p in found:
        console.print(f"  {p['severity']}: {p['message']}", style="red" if p["severity"] == "error" else "yellow",
                      markup=False)
    if strict and any(p["severity"] == "error" for p in found):
        raise typer.Exit(1)


@app.command()
def prepare(
    name: str = typer.Argument(..., help="Dataset name."),
    version: int | None = typer.Option(None, DATASET_VERSION, help="Dataset version (default: the latest)."),
    size: int = typer.Option(224, help="Output side in pixels."),
    resize: Resize = typer.Option(Resize.crop, help="crop: short side, then centre crop; letterbox: pad to a square."),
    crop: str | None = typer.Option(None, help="'boxes': one sample per box, cut with --pad around it."),
    pad: float = typer.Option(0.1, help="Box padding as a fraction of the box's longer side."),
    workers: int | None = typer.Option(None, help="Parallel workers (default: the number of cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Decode every image once into memory-mapped uint8 shards that training reads fast.

    Resumable after a kill; a second run with the same parameters does no work.
    """
    from snapid.data.cache import PrepareParams
    from snapid.data.cache import prepare as run_prepare
    from snapid.images import DecodeLimits

    if crop not in (None, "boxes", "none"):
        raise DatasetError(f"--crop {crop!r}: expected 'boxes'")
    s = settings()
    params = PrepareParams(size=size, resize=resize.value, crop_boxes=crop == "boxes", pad=pad)
    limits = DecodeLimits.from_settings(s)
    manifest = _load(name, version)
    with progress_bar(f"preparing {name}", quiet=as_json) as progress:
        report = run_prepare(manifest, workspace(), params, workers=workers or s.workers, limits=limits,
                             progress=progress)
    if as_json:
        emit_json(report.as_dict())
        return
    console.print(f"[green]prepared[/] {report.dataset} v{report.version}: {report.items} items {report.splits}, "
                  f"{report.processed} decoded, {report.reused} already cached; {report.cache_dir}")
    for note in report.notes:
        console.print(f"  note: {note}", markup=False)
