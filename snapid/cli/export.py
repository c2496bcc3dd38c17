"""`snapid export RUN|ENSEMBLE`: a verified, servable bundle."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from snapid.cli.common import console, emit_json, engine, workspace


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


def export(
    run: str = typer.Argument(..., help="Run or ensemble name (`snapid runs list`)."),
    out: Path | None = typer.Option(None, "--out", help="Bundle folder to write (default: $SNAPID_HOME/bundles/RUN)."),
    int8: bool = typer.Option(False, "--int8", help="Static int8 quantisation, calibrated on the training cache; "
                              "refused when validation top-1 drops by more than 1 point."),
    force: bool = typer.Option(False, "--force", help="Keep the int8 model even when it loses more than 1 point."),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx (servable) or torchscript (model.pt "
                                     "for torch users; the server refuses it)."),
    zip_: bool = typer.Option(False, "--zip", help="Also write the bundle as one OUT.snapid file."),
    as_json: bool = typer.Option(False, "--json", help="Print the bundle's manifest as JSON on stdout."),
    detector: str | None = typer.Option(None, "--detector", help="A detector run (`snapid detect train`) of the same "
                                           "dataset: the bundle then detects, crops and identifies every object."),
    license: str | None = typer.Option(None, "--license", help="The model's license in card.md's metadata: a "
                                          "Hugging Face license id such as apache-2.0 or cc-by-4.0 (another name is "
                                          "written as license: other with license_name); default unknown."),
    references: int = typer.Option(20, "--references", min=0, max=100, help="Reference photos per class in the bundle "
                                   "(thumbnails + embeddings, chosen to cover the class): answers show the 3 nearest "
                                   "to the query. 0: none."),
    subset: list[str] = typer.Option([], "--subset", help="NAME=FILE: a named candidate subset, FILE listing class "
                                     "ids or names one per line; predict?subset=NAME answers among them. Repeatable."),
) -> None:
    """Export a run (or an ensemble) as a bundle: the model, labels, preprocessing, calibration, model card
    and a manifest with the sha256 of every file. The ONNX graph must match torch on real validation
    images (max probability difference 1e-4), or nothing is written."""
    from snapid.export.from_run import export_run
    from snapid.export.subsets import parse_option

    with _Steps(quiet=as_json) as steps:
        bundle = export_run(run, out, workspace=workspace(), engine=engine(), int8=int8, force=force, fmt=fmt.value,
                            zip_=zip_, progress=steps.show, detector=detector,
                            license=license, references=references, subsets=parse_option(subset))
    manifest = bundle.manifest
    if as_json:
        emit_json({"path": str(bundle.path), "sha256": bundle.sha256, **manifest})
        return
    parity = manifest["parity"]
    console.print(f"[green]bundle[/] {bundle.path}  version {bundle.version}  sha256 {bundle.sha256[:12]}",
                  highlight=False)
    console.print(f"  parity: max |p_export - p_torch| {parity['max_abs_diff']:.2g} on {parity['images']} "
                  f"{parity['split']} images", highlight=False)
    refs = manifest.get("references")
    if refs:
        held = f" and {refs['held_out']} held-out embeddings (for add-class)" if refs.get("held_out") else ""
        console.print(f"  reference photos: {refs['photos']} of {refs['classes']} classes{held}, "
                      f"+{refs['bytes'] / 1e6:.2f} MB", highlight=False)
    found = manifest.get("detector")
    if found:
        check = found["parity"]
        console.print(f"  detector: {found['run']} at {found['size']} px, score >= {found['score_threshold']}, "
                      f"crop pad {found['pad']}; parity: boxes within {check['max_box_diff']:.2g} px, scores within "
                      f"{check['max_score_diff']:.2g} on {check['images']} photos", highlight=False)
    report = manifest.get("int8_report")
    if report:
        console.print(f"  int8: top-1 {100 * report['top1_int8']:.2f} % (fp32 {100 * report['top1_fp32']:.2f} %, "
                      f"{report['drop_points']:+.2f} points lost) on {report['n']} val images; "
                      f"{report['ms_per_image_int8']} ms/image vs {report['ms_per_image_fp32']} fp32 "
                      f"(x{report['speedup']})", highlight=False)
    if zip_:
        console.print(f"  archive: {bundle.path.with_name(bundle.path.name + '.snapid')}", highlight=False)


class _Steps:
    """A spinner naming the current step on a terminal; silent elsewhere (and with --json)."""

    def __init__(self, quiet: bool):
        self.live = not quiet and console.is_terminal
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                            transient=True)
        self.task = None

    def __enter__(self) -> _Steps:
        if self.live:
            self.bar.start()
            self.task = self.bar.add_task("starting", total=None)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def show(self, step: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=step)
