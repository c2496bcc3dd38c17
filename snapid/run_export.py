"""Runs where people already look (issue 22): a recorded run written as TensorBoard event files, or logged to
MLflow, with what snapid's own database holds of it: the config, every epoch's scalars, the stored evaluations
(headline metrics and the confusion matrix) and, for MLflow, the exported bundle.

Nothing is trained or evaluated here: a run is exported as it was recorded (`snapid eval RUN` first for an
evaluation, `snapid export RUN` for a bundle). Exporting again replaces the earlier export instead of adding a
second copy: TensorBoard's DIR/RUN/ gets new event files in place of the ones snapid wrote there before (files
ending in ``.snapid``), and the MLflow run tagged ``snapid.run = RUN`` in the experiment is deleted (to MLflow's
trash, emptied by ``mlflow gc``) and logged anew.

Torch-free: the event files are written by tensorboardX (the `tensorboard` extra), MLflow is the `mlflow` extra
(mlflow-skinny), each imported only when asked for. Beside snapid.run_report, since both read runs and
evaluations of classifiers and detectors.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from snapid.errors import SnapidError
from snapid.reporting import wide_font
from snapid.track import runs as track
from snapid.track.db import transaction

MAX_EVAL_BYTES = 64 << 20
MAX_PARAM_CHARS = 6000          # MLflow's limit for one parameter's value (older servers)
MAX_FOLDER_CHARS = 100
EVENT_SUFFIX = ".snapid"         # the event files snapid writes end so; only those are ever replaced
MLFLOW_TAG = "snapid.run"
# (column of the epochs table, the scalar's name in TensorBoard and MLflow): top-1, top-5 and macro-F1 are
# measured on the validation split each epoch.
EPOCH_SCALARS = (("train_loss", "train/loss"), ("val_loss", "val/loss"), ("top1", "val/top1"), ("top5", "val/top5"),
                 ("macro_f1", "val/macro_f1"), ("lr", "train/lr"), ("images_per_s", "train/images_per_s"),
                 ("seconds", "train/epoch_seconds"))
EVAL_KINDS = (re.compile(r"eval_(?P<split>\w+)"), re.compile(r"detect_eval_(?P<split>\w+)"))
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}  # others stay RUNNING
MAX_PAIR_ROWS = 30


class RunExportError(SnapidError):
    code = "run_export_error"
    status = 422


@dataclass
class RunRecord:
    """One run as the database holds it: its row, epochs, evaluations by split and its latest bundle."""

    name: str
    run: dict
    epochs: list[dict]
    evaluations: dict[str, dict] = field(default_factory=dict)   # split → the stored evaluation (eval-SPLIT.json)
    evaluation_files: dict[str, Path] = field(default_factory=dict)
    bundle: Path | None = None                                    # the bundle folder (or its .zip) when it exists

    @property
    def step(self) -> int:
        """The epoch an evaluation is shown at: the best checkpoint's (what was evaluated), else the last."""
        if self.run.get("best_epoch") is not None:
            return int(self.run["best_epoch"])
        return int(self.epochs[-1]["epoch"]) if self.epochs else 0


# --- gathering -----------------------------------------------------------------------------------------------
def gather(name: str, *, engine: Engine) -> RunRecord:
    """Everything recorded of run ``name`` (NotFound when there is no such run)."""
    with transaction(engine) as s:
        run = track.get_run(s, name=name)
        epochs = track.epochs(s, name=name)
        artifacts = track.artifacts(s, name=name)
    record = RunRecord(name=name, run=run, epochs=epochs)
    for artifact in artifacts:
        split = _eval_split(artifact["kind"])
        path = Path(artifact["path"])
        if split and path.is_file():
            record.evaluations[split] = _read_json(path)
            record.evaluation_files[split] = path
        elif artifact["kind"] == "bundle":
            archive = (artifact.get("meta") or {}).get("archive")
            record.bundle = path if path.is_dir() else Path(archive) if archive and Path(archive).is_file() else None
    return record


def _eval_split(kind: str) -> str | None:
    for pattern in EVAL_KINDS:
        match = pattern.fullmatch(kind)
        if match:
            return match["split"]
    return None


def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_EVAL_BYTES:
            raise RunExportError(f"{path} is larger than {MAX_EVAL_BYTES >> 20} MB; evaluate the run again")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunExportError(f"cannot read the evaluation {path}: {exc}") from None
    return value if isinstance(value, dict) else {}


# --- what is exported, the same for both ---------------------------------------------------------------------
def epoch_scalars(record: RunRecord) -> list[tuple[str, int, float]]:
    """(name, epoch, value) for every recorded epoch figure."""
    return [(tag, int(e["epoch"]), float(e[column])) for e in record.epochs for column, tag in EPOCH_SCALARS
            if _finite(e.get(column))]


def evaluation_scalars(record: RunRecord) -> list[tuple[str, int, float]]:
    """(SPLIT/metric, step, value) for each stored evaluation's headline numbers (top1, macro_f1, ece, n ...)."""
    return [(f"{split}/{key}", record.step, float(value)) for split, ev in sorted(record.evaluations.items())
            for key, value in ev.items() if _finite(value)]


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flat_config(record: RunRecord) -> dict[str, str]:
    """The run's config flattened to dotted keys (lists as JSON), with the run's dataset, version, model (as
    resolved: the config may say auto) and kind: MLflow's params."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            flat[prefix] = text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS - 1] + "…"

    walk("", record.run["config"])
    return {**flat, "dataset": record.run["dataset"], "dataset_version": str(record.run["dataset_version"]),
            "model": record.run["model"], "kind": record.run["kind"]}


def summary_text(record: RunRecord) -> str:
    """The run in a few Markdown lines: what, on what, how it ended, its phases and the best epoch."""
    run = record.run
    phases: dict[str, list[int]] = {}
    for e in record.epochs:
        phases.setdefault(e["phase"], []).append(int(e["epoch"]))
    lines = [f"**{run['name']}**: {run['kind']} run of `{run['model']}` on {run['dataset']} "
             f"v{run['dataset_version']}, {run['status']}" + (f" in {run['seconds']:.0f} s" if run["seconds"] else ""),
             *(f"- {phase}: epochs {min(ep)}–{max(ep)}" for phase, ep in phases.items())]
    if run.get("best_metric") is not None:
        lines.append(f"- best {run['monitor']} {run['best_metric']:.4f} at epoch {run['best_epoch']}")
    if run.get("error"):
        lines.append(f"- error: {run['error'][:500]}")
    return "\n".join(lines)


def config_text(record: RunRecord) -> str:
    """The config as an indented (Markdown code) block of YAML, as TensorBoard's text tab shows it."""
    import yaml

    text = yaml.safe_dump(record.run["config"], sort_keys=True, allow_unicode=True, default_flow_style=False)
    return "\n".join("    " + line for line in text.splitlines())


def confusion_png(evaluation: dict) -> bytes | None:
    """The row-normalised confusion matrix drawn as the report draws it (a PNG), or None where the report
    draws none either (no dense matrix, or more classes than a heatmap can show)."""
    from matplotlib import rc_context

    from snapid.evaluate import figures

    confusion = evaluation.get("confusion") or {}
    classes = [{"id": c["id"], "name": c["name"]} for c in evaluation.get("per_class", [])]
    normalized = confusion.get("normalized") or []
    if confusion.get("format") != "dense" or not 0 < len(classes) <= figures.MAX_HEATMAP_CLASSES \
            or len(normalized) != len(classes):
        return None
    fonts = {"font.family": ["DejaVu Sans", wide_font()]} if wide_font() else {}
    with rc_context(fonts):
        html = figures.confusion_heatmap(normalized, classes)
    match = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    return base64.b64decode(match[1]) if match else None


def confusion_pairs_text(evaluation: dict) -> str:
    """The largest confusions as a Markdown table: where no heatmap is drawn."""
    from snapid.metrics import top_confused_pairs

    confusion = evaluation.get("confusion") or {}
    labels = confusion.get("labels") or []
    if confusion.get("format") == "top_pairs":
        pairs = [(p["true"], p["pred"], p["count"]) for p in confusion.get("pairs", [])]
    elif confusion.get("counts"):
        import numpy as np

        counts = np.asarray(confusion["counts"], dtype=np.int64)
        pairs = [(labels[t], labels[p], n) for t, p, n in top_confused_pairs(counts, MAX_PAIR_ROWS)] \
            if counts.ndim == 2 and counts.shape[0] == len(labels) else []
    else:
        return ""
    rows = [f"| {t} | {p} | {n} |" for t, p, n in pairs[:MAX_PAIR_ROWS]]
    return "\n".join(["| true | predicted | images |", "| --- | --- | ---: |", *rows]) if rows else ""


# --- TensorBoard ------------------------------------------------------------------------------------------------
def to_tensorboard(names: list[str], out: Path, *, engine: Engine) -> list[dict]:
    """Write each run's event files to OUT/RUN/ (one TensorBoard run per snapid run); an earlier export of the
    same run there is replaced. Returns one line of report per run."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise RunExportError("--tensorboard needs tensorboardX: pip install 'snapid[tensorboard]'",
                             code="tensorboard_missing", status=503) from None
    records = [gather(name, engine=engine) for name in dict.fromkeys(names)]   # every run known before writing
    out = Path(out)
    folders = _folders([r.name for r in records], out)
    reports = []
    for record in records:
        folder = folders[record.name]
        earlier = _earlier_events(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # written beside the folder first: an event file is named by the second it was opened, so a re-export
        # within the same second would reuse (and then delete) the earlier file's name; a failed export leaves
        # nothing behind
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=out))
        try:
            writer = SummaryWriter(logdir=str(staging), filename_suffix=EVENT_SUFFIX, flush_secs=3600)
            counts = _write_events(writer, record)
            writer.close()
            for path in earlier:
                path.unlink(missing_ok=True)
            for path in staging.iterdir():
                path.replace(folder / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        reports.append({"run": record.name, "folder": str(folder), "replaced": len(earlier) > 0, **counts})
    return reports


def _folders(names: list[str], out: Path) -> dict[str, Path]:
    """OUT/RUN for each run; a name that is not a plain file name gets a cleaned one with a short hash."""
    folders = {}
    for name in names:
        clean = re.sub(r"[^\w.-]+", "_", name).lstrip(".")[:MAX_FOLDER_CHARS] or "run"
        if clean != name:
            clean += "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        folders[name] = out / clean
    return folders


def _earlier_events(folder: Path) -> list[Path]:
    """snapid's own event files in ``folder``; refused when TensorBoard files of someone else's are there too."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise RunExportError(f"{folder} is a file; give --tensorboard a folder")
    events = [p for p in folder.iterdir() if "tfevents" in p.name]
    foreign = [p.name for p in events if not p.name.endswith(EVENT_SUFFIX)]
    if foreign:
        raise RunExportError(f"{folder} holds event files snapid did not write ({', '.join(sorted(foreign)[:3])}); "
                             "give --tensorboard another folder")
    return events


def _write_events(writer, record: RunRecord) -> dict:
    import numpy as np
    from PIL import Image

    scalars = epoch_scalars(record) + evaluation_scalars(record)
    for tag, step, value in scalars:
        writer.add_scalar(tag, value, step)
    writer.add_text("run", summary_text(record), 0)
    writer.add_text("config", config_text(record), 0)
    images = 0
    for split, ev in sorted(record.evaluations.items()):
        writer.add_text(f"{split}/evaluation", _evaluation_text(split, ev), record.step)
        png = confusion_png(ev)
        if png is not None:
            with Image.open(io.BytesIO(png)) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(f"{split}/confusion", pixels, record.step, dataformats="HWC")
            images += 1
        else:
            pairs = confusion_pairs_text(ev)
            if pairs:
                writer.add_text(f"{split}/confused_pairs", pairs, record.step)
    return {"scalars": len(scalars), "evaluations": sorted(record.evaluations), "images": images}


def _evaluation_text(split: str, ev: dict) -> str:
    rows = [f"| {key} | {value:.6g} |" for key, value in ev.items() if _finite(value)]
    when = f"evaluated {ev['created_at']} on the {split} split\n\n" if ev.get("created_at") else ""
    return when + "\n".join(["| metric | value |", "| --- | ---: |", *rows])


# --- MLflow -----------------------------------------------------------------------------------------------------
def to_mlflow(names: list[str], uri: str, *, engine: Engine, experiment: str | None = None) -> list[dict]:
    """Log each run to the MLflow tracking URI ``uri`` (a server, a database, or a local ``file:`` store) in
    ``experiment`` (default: the run's dataset): params, per-epoch metrics, evaluations and the bundle as
    artifacts. A run logged before (tag snapid.run) in that experiment is replaced. One line of report per run."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RunExportError("--mlflow needs MLflow: pip install 'snapid[mlflow]'", code="mlflow_missing",
                             status=503) from None
    records = [gather(name, engine=engine) for name in dict.fromkeys(names)]
    try:
        client = MlflowClient(tracking_uri=uri)
        return [_log_run(client, record, experiment or record.run["dataset"]) for record in records]
    except MlflowException as exc:
        raise RunExportError(f"MLflow ({uri}): {exc.message}", code="mlflow_error") from None


def _log_run(client, record: RunRecord, experiment: str) -> dict:
    from mlflow.entities import Metric, Param

    experiment_id = _experiment_id(client, experiment)
    earlier = _earlier_runs(client, experiment_id, record.name)
    for run_id in earlier:
        client.delete_run(run_id)
    run = record.run
    tags = {MLFLOW_TAG: record.name, "snapid.dataset": run["dataset"],
            "snapid.dataset_version": str(run["dataset_version"]), "snapid.model": run["model"],
            "snapid.kind": run["kind"], "snapid.status": run["status"],
            "mlflow.note.content": summary_text(record)}
    created = client.create_run(experiment_id, start_time=_millis(run["started_at"] or run["created_at"]), tags=tags,
                                run_name=record.name)
    run_id = created.info.run_id
    now = int(time.time() * 1000)
    params = [Param(key[:250], value) for key, value in flat_config(record).items()]
    scalars = epoch_scalars(record) + evaluation_scalars(record)
    metrics = [Metric(tag, value, now, step) for tag, step, value in scalars]
    for i in range(0, len(params), 100):        # MLflow takes at most 100 params and 1000 metrics a batch
        client.log_batch(run_id, params=params[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    with tempfile.TemporaryDirectory(prefix="snapid-mlflow-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(run["config"], ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        client.log_artifact(run_id, str(config), "snapid")
        for split, path in sorted(record.evaluation_files.items()):
            client.log_artifact(run_id, str(path), "evaluation")
            png = confusion_png(record.evaluations[split])
            if png is not None:
                image = Path(tmp) / f"confusion-{split}.png"
                image.write_bytes(png)
                client.log_artifact(run_id, str(image), "evaluation")
    if record.bundle is not None and record.bundle.is_dir():
        client.log_artifacts(run_id, str(record.bundle), "bundle")
    elif record.bundle is not None:
        client.log_artifact(run_id, str(record.bundle), "bundle")
    status = MLFLOW_STATUS.get(run["status"])
    if status:
        client.set_terminated(run_id, status, end_time=_millis(run["ended_at"]) if run["ended_at"] else None)
    return {"run": record.name, "experiment": experiment, "mlflow_run_id": run_id, "replaced": earlier,
            "params": len(params), "metrics": len(metrics), "evaluations": sorted(record.evaluations),
            "bundle": str(record.bundle) if record.bundle else None}


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage != "active":
        raise RunExportError(f"the MLflow experiment {name!r} is deleted; restore it (`mlflow experiments restore`) "
                             "or give --experiment another name")
    return found.experiment_id


def _earlier_runs(client, experiment_id: str, name: str) -> list[str]:
    """The active MLflow runs tagged snapid.run = NAME (found by reading the tags: a run name may hold quotes)."""
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{MLFLOW_TAG}` != ''", max_results=1000,
                                  page_token=token)
        found += [r.info.run_id for r in page if r.data.tags.get(MLFLOW_TAG) == name]
        token = page.token
        if not token:
            return found


def _millis(iso: str | None) -> int | None:
    if not iso:
        return None
    when = datetime.fromisoformat(iso)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)   # SQLite's are UTC
