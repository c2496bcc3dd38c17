"""The Python API for a notebook: import a folder, fit a model, export a bundle (then `snapid.load`).

    ds = snapid.import_dataset("photos/")        # name defaults to the folder's
    run = snapid.fit(ds, budget="10m")            # a Run: name, metrics, path; calibrated
    bundle = run.export("plants-v1")              # verified against torch; int8 when it keeps accuracy
    model = snapid.load("plants-v1")              # see snapid.inference; needs no torch
    answers = model.predict(["a.jpg", "b.jpg"])

Everything lands in the same workspace and database as the command line ($SNAPID_HOME,
$SNAPID_DB_URL), or in ``home=`` when given, so `snapid runs list` and the dashboard see it.
(``fit``, not ``train``: ``snapid.train`` is the training package.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from snapid.config import Settings, get_settings
from snapid.workspace import Workspace


def _context(home: str | os.PathLike | None) -> tuple[Settings, Workspace, object]:
    from snapid.track.db import get_engine

    settings = get_settings()
    if home is not None:
        settings = settings.model_copy(update={"home": Path(home)})
    workspace = Workspace.at(settings.home)
    return settings, workspace, get_engine(settings.resolved_db_url())


@dataclass(frozen=True)
class Dataset:
    name: str
    version: int
    images: int
    classes: int
    splits: dict[str, int]
    rejected: dict[str, int] = field(default_factory=dict)   # reason → files
    notes: list[str] = field(default_factory=list)
    home: str | None = None

    def __str__(self) -> str:
        return f"{self.name} v{self.version}: {self.images} images, {self.classes} classes, splits {self.splits}"


def import_dataset(path: str | os.PathLike, name: str | None = None, *, format: str = "auto",
                   home: str | os.PathLike | None = None, new_version: bool = False) -> Dataset:
    """Import a folder (one sub-folder per class, or any layout `snapid data import` reads), an archive
    or a CSV / JSON manifest. Importing the same photos again gives the same version back, unless
    ``new_version``."""
    from snapid.images import DecodeLimits
    from snapid.importer import import_dataset as run_import
    from snapid.pipeline import default_name

    settings, workspace, engine = _context(home)
    limits = DecodeLimits.from_settings(settings)
    report = run_import(Path(path), name=name or default_name(Path(path)), engine=engine, fmt=format,
                        workers=settings.workers, limits=limits, unpack_to=workspace.unpacked,
                        reuse_unchanged=not new_version)
    return Dataset(report.name, report.version, report.images, report.classes, report.splits, report.rejected,
                   report.notes, None if home is None else str(home))


@dataclass(frozen=True)
class Run:
    name: str
    path: Path                        # the run's folder: checkpoints, calibration.json, evaluations
    metrics: dict[str, float]         # val_top1, val_macro_f1, test_top1 … as `snapid train --json` gives them
    calibration: dict | None          # temperature and the "not sure" threshold; None without validation photos
    home: str | None = None

    def export(self, name: str | None = None, *, int8: bool | None = None) -> ExportedBundle:
        """Write a verified bundle to $SNAPID_HOME/bundles/NAME (default: the run's name). ``int8``: None
        tries int8 and keeps it only when validation top-1 stays within 1 point; True insists; False: fp32."""
        from snapid.export.from_run import export_run
        from snapid.export.quantize import Int8Refused

        _, workspace, engine = _context(self.home)
        out = workspace.bundles / (name or self.name)
        try:
            bundle = export_run(self.name, out, workspace=workspace, engine=engine, int8=int8 is not False)
        except Int8Refused:
            if int8:
                raise
            bundle = export_run(self.name, out, workspace=workspace, engine=engine)
        return ExportedBundle(out.name, Path(bundle.path), bundle.version, bool(bundle.manifest.get("int8")))


@dataclass(frozen=True)
class ExportedBundle:
    name: str
    path: Path
    version: str
    int8: bool

    def __fspath__(self) -> str:  # snapid.load(bundle) and open(...) take it as its folder
        return str(self.path)


def fit(dataset: Dataset | str, *, budget: str | None = "10m", model: str | None = None,
        home: str | os.PathLike | None = None, name: str | None = None, quiet: bool = True, **options) -> Run:
    """Train the default recipe on ``dataset`` (a Dataset, or a dataset name), planned to ``budget``,
    then calibrate it on the validation split. ``options`` are TrainConfig fields (docs/training.md),
    e.g. ``probe_epochs=3``; ``model`` picks a backbone instead of the planner's choice."""
    from snapid.pipeline import train_calibrated
    from snapid.train.config import TrainConfig
    from snapid.train.progress import Reporter

    if isinstance(dataset, Dataset) and home is None:
        home = dataset.home
    settings, workspace, engine = _context(home)
    overrides = {"budget": budget, "model": model, **options}
    config = TrainConfig.load(None, {k: v for k, v in overrides.items() if v is not None})
    reporter = Reporter() if quiet else _PrintReporter()
    summary = train_calibrated(dataset.name if isinstance(dataset, Dataset) else dataset, config, workspace=workspace,
                               engine=engine, name=name,
                               version=dataset.version if isinstance(dataset, Dataset) else None, reporter=reporter,
                               workers=settings.workers)
    metrics = {k: v for k, v in summary.items() if isinstance(v, float) and k.startswith(("val_", "test_"))}
    return Run(summary["name"], Path(summary["run_dir"]), metrics, summary["calibration"],
               None if home is None else str(home))


class _PrintReporter:
    """One line per epoch and note on standard output: enough in a notebook cell."""

    def phase(self, title: str, total: int) -> None:
        print(title, flush=True)

    def progress(self, done: int, total: int, images_per_s: float | None = None) -> None:
        pass

    def epoch(self, r: dict) -> None:
        print(f"epoch {r['epoch']} {r['phase']}: val top-1 {r['top1']:.4f}", flush=True)

    def note(self, text: str) -> None:
        print(text, flush=True)
