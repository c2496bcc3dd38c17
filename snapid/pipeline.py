"""The pipeline end to end, for `snapid train`, `snapid up` and the Python API.

It sits above data, train, evaluate and export (nothing below imports it): train and calibrate in
one step, so every completed run is ready to export; and `up`, from a folder of photos to a
bundle, reusing what has not changed and resuming what crashed:

- the import makes no new dataset version when the files, labels and splits are those of the latest;
- the run is named from the dataset version and the recipe (DATASET-vN-up-KEY): a completed one is
  reused, a stopped or crashed one with a checkpoint is resumed;
- the bundle is reused when it was exported from that run and is still intact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from snapid.errors import SnapidError
from snapid.workspace import Workspace

Say = Callable[[str], None]


def train_calibrated(dataset: str, config, *, workspace: Workspace, engine: Engine, name: str | None = None,
                     resume: str | None = None, version: int | None = None, reporter=None, workers: int = 1) -> dict:
    """Train (or resume) a run, then fit its temperature and "unknown" threshold on the validation split,
    so it can be exported as it is. The summary gains "run_dir" and "calibration" (None without a
    validation split). Returns {} on a torchrun rank other than 0."""
    from snapid.evaluate.calibrate import NoValidationSplit, calibrate_for_serving
    from snapid.train.fit import train

    summary = train(dataset, config, workspace=workspace, engine=engine, name=name, resume=resume, version=version,
                    reporter=reporter, workers=workers)
    if not summary:
        return summary
    summary["run_dir"] = str(workspace.runs / summary["name"])
    try:
        result = calibrate_for_serving(summary["name"], workspace=workspace, engine=engine)
    except NoValidationSplit:
        summary["calibration"] = None
        return summary
    summary["calibration"] = {key: result.get(key) for key in (
        "temperature", "threshold", "target_accuracy", "target_coverage", "val_coverage", "val_accepted_accuracy",
        "target_met")}
    return summary


def describe_calibration(calibration: dict | None) -> str:
    """One line for the terminal about what the run's threshold does."""
    from snapid.evaluate.calibrate import DEFAULT_TARGET_ACCURACY

    if calibration is None:
        return "not calibrated: the dataset has no validation photos, so the server will never answer 'not sure'"
    answered = calibration.get("val_coverage") or 0.0
    how = (f"no threshold reached {DEFAULT_TARGET_ACCURACY:.0%} accuracy, so it answers "
           f"{calibration['target_coverage']:.0%} of photos" if calibration.get("target_coverage") else
           f"answers {answered:.0%} of validation photos with "
           f"{calibration.get('val_accepted_accuracy') or 0:.1%} accuracy")
    return (f"calibrated on the validation split: temperature {calibration['temperature']:.2f}, 'not sure' below "
            f"{calibration['threshold']:.2f} ({how})")


# --- snapid up ----------------------------------------------------------------------------------
@dataclass
class UpResult:
    dataset: str
    version: int
    run: str
    bundle: str
    metrics: dict[str, float]              # top-1 on the evaluated splits: {"val": …, "test": …}
    threshold: float
    int8: bool
    reused: dict[str, bool] = field(default_factory=dict)   # stage → nothing had to be redone
    findings: list[dict] = field(default_factory=list)      # what the inspection found (severity, code, message)
    report: str = ""                                        # the inspection's HTML report

    def as_dict(self) -> dict:
        return asdict(self)


def default_name(photos: Path) -> str:
    """The dataset name a folder, archive or manifest gets: its own name, cleaned to what names allow."""
    from snapid.data.archive import is_archive

    path = Path(photos)
    stem = path.resolve().name
    if is_archive(path) or path.is_file():
        for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip", ".csv",
                       ".json", ".txt"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in stem).strip("-._")[:64]
    return cleaned or "photos"


def up(photos: Path, *, workspace: Workspace, engine: Engine, name: str | None = None, budget: str = "10m",
       force: bool = False, workers: int = 1, limits=None, say: Say = print, progress=None, reporter=None) -> UpResult:
    """Import → inspect → train and calibrate → export (int8 when its accuracy gate passes); see the module."""
    from snapid.data.inspect import inspect_manifest, problems
    from snapid.data.report import write_report
    from snapid.images import DEFAULT_LIMITS
    from snapid.importer import import_dataset
    from snapid.track import datasets as dataset_store
    from snapid.track.db import transaction
    from snapid.train.config import TrainConfig

    photos = Path(photos)
    if not photos.exists():
        raise SnapidError(f"{photos}: no such folder or file", code="not_found", status=404)
    name = name or default_name(photos)
    progress = progress or (lambda stage: (lambda done, total: None))
    reused: dict[str, bool] = {}

    say(f"1/4 importing {photos} as {name}")
    report = import_dataset(photos, name=name, engine=engine, workers=workers, limits=limits or DEFAULT_LIMITS,
                            unpack_to=workspace.unpacked, progress=progress("importing"), reuse_unchanged=True)
    reused["import"] = report.unchanged
    state = "the same photos as before: reused" if report.unchanged else "new version"
    say(f"    {name} v{report.version} ({state}): {report.images} images, {report.classes} classes, "
        f"splits {report.splits}, {sum(report.rejected.values())} files rejected")

    with transaction(engine) as session:
        manifest = dataset_store.load_manifest(session, name=name, version=report.version)
    findings = inspect_manifest(manifest)
    found = problems(findings)
    html = workspace.reports / f"{name}-inspect.html"
    write_report(findings, html_path=html)
    say(f"2/4 inspected: {len(found)} findings; report {html}")
    for problem in found:
        say(f"    {problem['severity']}: {problem['message']}")
    leaks = [p for p in found if p["code"] == "leakage"]
    if leaks and not force:
        raise SnapidError(f"{name} v{report.version}: the same photos are in more than one split, so the test figures "
                          f"would flatter the model; remove the copies (report: {html}) or pass --force",
                          code="leakage", status=422)
    if len(manifest.classes) < 2:
        raise SnapidError(f"{photos}: only {len(manifest.classes)} class found; put each class's photos in a folder "
                          "of its own (PHOTOS/CLASS/photo.jpg)", code="usage", status=422)

    config = TrainConfig(budget=budget)
    run_name, resume = _run_to_use(name, report.version, config, engine=engine, workspace=workspace)
    if run_name and not resume:
        reused["train"] = True
        say(f"3/4 run {run_name} already trained on v{report.version} with this recipe: reused")
    else:
        say(f"3/4 training ({'resuming ' + resume if resume else 'budget ' + budget})")
        summary = train_calibrated(name, config, workspace=workspace, engine=engine, version=report.version,
                                   name=None if resume else _run_base(name, report.version, config), resume=resume,
                                   reporter=reporter, workers=workers)
        run_name, reused["train"] = summary["name"], False
        say(f"    run {run_name}: {describe_calibration(summary['calibration'])}")

    bundle, int8, reused["export"] = _export(run_name, workspace=workspace, engine=engine, say=say)
    calibration = json.loads((Path(bundle) / "calibration.json").read_text())
    metrics = _metrics(run_name, engine=engine)
    return UpResult(dataset=name, version=report.version, run=run_name, bundle=bundle, metrics=metrics,
                    threshold=float(calibration["threshold"]), int8=int8, reused=reused, findings=found,
                    report=str(html))


def _recipe_key(config) -> str:
    """Short and stable: the same request (budget, model, seed …) on the same snapid version gives the same key."""
    from snapid import __version__

    text = json.dumps({"config": config.public(), "snapid": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _run_base(dataset: str, version: int, config) -> str:
    return f"{dataset}-v{version}-up-{_recipe_key(config)}"


def _run_to_use(dataset: str, version: int, config, *, engine: Engine,
                workspace: Workspace) -> tuple[str | None, str | None]:
    """(completed run to reuse, None) or (None, run to resume) or (None, None): train a new one."""
    from snapid.track import runs as track
    from snapid.track.db import transaction

    base = _run_base(dataset, version, config)
    with transaction(engine) as session:
        candidates = [r for r in track.list_runs(session, dataset=dataset)
                      if r["name"] == base or r["name"].startswith(base + "-")]
    for run in candidates:  # newest first
        if run["status"] == "completed":
            return run["name"], None
        if run["status"] != "running" and (Path(run["run_dir"]) / "last.json").exists():
            return None, run["name"]
    return None, None


def _export(run: str, *, workspace: Workspace, engine: Engine, say: Say) -> tuple[str, bool, bool]:
    """(bundle path, int8?, reused?): the run's intact bundle, else a new one, int8 when it keeps its accuracy."""
    from snapid.export.bundle import BundleError, load_bundle
    from snapid.export.from_run import export_run
    from snapid.export.quantize import Int8Refused

    out = workspace.bundles / run
    try:
        bundle = load_bundle(out)
        if bundle.manifest.get("run") == run:
            int8 = bool(bundle.manifest.get("int8"))
            say(f"4/4 bundle {out} already exported from {run} and intact: reused")
            return str(out), int8, True
    except (BundleError, OSError):
        pass
    say(f"4/4 exporting {run} (int8 when it keeps the validation accuracy within 1 point)")
    try:
        bundle = export_run(run, out, workspace=workspace, engine=engine, int8=True, progress=lambda s: None)
        report = bundle.manifest.get("int8_report") or {}
        say(f"    int8 bundle {out}: {report.get('drop_points', 0):+.2f} points of validation top-1, "
            f"x{report.get('speedup', 1)} faster")
        return str(out), True, False
    except Int8Refused as exc:
        say(f"    int8 refused ({exc.message.split('; nothing was written')[0]}); exporting fp32")
    bundle = export_run(run, out, workspace=workspace, engine=engine, progress=lambda s: None)
    say(f"    fp32 bundle {out}")
    return str(out), False, False


def _metrics(run: str, *, engine: Engine) -> dict[str, float]:
    from snapid.track import runs as track
    from snapid.track.db import transaction

    with transaction(engine) as session:
        summary = track.get_run(session, name=run).get("summary") or {}
    return {split: float(summary[f"{split}_top1"])
            for split in ("val", "test") if summary.get(f"{split}_top1") is not None}
