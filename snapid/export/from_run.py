"""`snapid export`: a finished run (or an ensemble) → a verified bundle that the server can load.

Every check runs before anything is written: the ONNX graph must match torch on real validation
images (onnx.check_parity), and an int8 graph must keep its top-1 (quantize.check_drop). Only then is
the bundle folder written, atomically (bundle.write_bundle), and recorded as the run's "bundle"
artifact. A refused export leaves no bundle and no artifact.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sqlalchemy.engine import Engine
from torch import nn

from snapid.data.cached_dataset import CachedDataset
from snapid.errors import SnapidError
from snapid.evaluate.calibrate import calibrate_for_serving, has_calibration
from snapid.evaluate.loaded import TrainedRun, load_trained, split_dataset
from snapid.export import explain
from snapid.export import onnx as onnx_export
from snapid.export import references as refs
from snapid.export import subsets as subset_files
from snapid.export.bundle import (
    FORMAT,
    MAX_JSON_BYTES,
    TORCHSCRIPT_FORMAT,
    Bundle,
    write_bundle,
    zip_bundle,
)
from snapid.export.card import model_card
from snapid.export.quantize import MAX_DROP_POINTS, int8_model
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace

FORMATS = {"onnx": FORMAT, "torchscript": TORCHSCRIPT_FORMAT}
SPLITS = ("train", "val", "test")
PARITY_SPLITS = ("val", "test", "train")   # real images, validation first; the others only when it is empty
Progress = Callable[[str], None]


@dataclass
class Source:
    """What gets exported: the torch module (normalised images → logits) and everything around it."""
    name: str
    run: dict                              # the runs row (an ensemble's own row for an ensemble)
    module: nn.Module
    classes: list[dict]
    preprocess: dict
    datasets: dict[str, CachedDataset]     # train / val / test of the prepared cache
    parity_split: str
    parity_inputs: np.ndarray              # normalised float32 images
    parity_reference: np.ndarray           # torch's probabilities for them
    members: list[dict] | None = field(default=None)


# --- the module to export ----------------------------------------------------------------------------
class EnsembleNet(nn.Module):
    """Runs every member on the same input and returns log(sum_m w_m softmax(logits_m / T_m)): the same
    "logits" ensemble_logits computes, so serving's softmax(logits / T) path needs nothing new. Members
    trained with another mean/std get the input re-standardised inside the graph."""

    def __init__(self, members: list[nn.Module], weights: list[float], temperatures: list[float],
                 preprocesses: list[dict]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("log_weights", torch.log(torch.tensor(weights).clamp_min(1e-12)).view(-1, 1, 1))
        self.temperatures = [float(t) for t in temperatures]
        first = preprocesses[0]
        self.rescale = [_restandardise(first, p) for p in preprocesses]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = []
        for member, temperature, rescale in zip(self.members, self.temperatures, self.rescale, strict=True):
            inputs = x if rescale is None else x * rescale[0] + rescale[1]
            terms.append(torch.log_softmax(member(inputs) / temperature, dim=1))
        return torch.logsumexp(torch.stack(terms) + self.log_weights, dim=0)


def _restandardise(first: dict, other: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) turning an input standardised with ``first``'s mean/std into ``other``'s."""
    if list(first["mean"]) == list(other["mean"]) and list(first["std"]) == list(other["std"]):
        return None
    m0, s0, m1, s1 = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)
                      for v in (first["mean"], first["std"], other["mean"], other["std"]))
    return s0 / s1, (m0 - m1) / s1


# --- loading a run or an ensemble --------------------------------------------------------------------
def load_source(name: str, *, workspace: Workspace, engine: Engine) -> Source:
    with transaction(engine) as s:
        run = track.get_run(s, name=name)
    if run["kind"] == "ensemble":
        return _ensemble_source(name, run, workspace=workspace, engine=engine)
    return _run_source(name, workspace=workspace, engine=engine)


def _datasets(trained: TrainedRun, workspace: Workspace, engine: Engine) -> dict[str, CachedDataset]:
    return {split: split_dataset(trained, split, workspace=workspace, engine=engine) for split in SPLITS}


def _parity_split(datasets: dict[str, CachedDataset]) -> str:
    return next((s for s in PARITY_SPLITS if len(datasets[s])), "val")


def _run_source(name: str, *, workspace: Workspace, engine: Engine) -> Source:
    trained = load_trained(name, engine=engine)
    datasets = _datasets(trained, workspace, engine)
    split = _parity_split(datasets)
    inputs = onnx_export.normalized(onnx_export.first_images(datasets[split]), trained.preprocess)
    reference = (onnx_export.torch_probabilities(trained.model, inputs) if len(inputs)
                 else np.zeros((0, len(trained.classes))))
    return Source(name=name, run=trained.run, module=trained.model, classes=trained.classes,
                  preprocess=trained.preprocess, datasets=datasets, parity_split=split, parity_inputs=inputs,
                  parity_reference=reference)


def _ensemble_source(name: str, run: dict, *, workspace: Workspace, engine: Engine) -> Source:
    from snapid.evaluate.sources import ensemble_logits, load_ensemble

    ens = load_ensemble(name, engine=engine)
    first = ens.members[0]
    geometry = [(m.preprocess["size"], m.preprocess["resize"], m.preprocess["crop_boxes"], m.preprocess["pad"])
                for m in ens.members]
    if len(set(geometry)) > 1:
        listing = ", ".join(f"{m.name} {m.preprocess['size']}px/{m.preprocess['resize']}" for m in ens.members)
        raise onnx_export.ExportError(f"ensemble {name!r}: one graph takes one input, but its members were trained on "
                                      f"different image sizes or crops ({listing}); serve them as separate bundles")
    module = EnsembleNet([m.model for m in ens.members], ens.weights, ens.temperatures,
                         [m.preprocess for m in ens.members])
    datasets = _datasets(first, workspace, engine)
    split = _parity_split(datasets)
    # the reference is the evaluation path itself, so the graph is checked against what the reports measured
    log_probs, _, dataset = ensemble_logits(name, split, workspace=workspace, engine=engine)
    inputs = onnx_export.normalized(onnx_export.first_images(dataset), first.preprocess)
    members = [{"name": m.name, "model": m.run["model"], "weight": w, "temperature": t}
               for m, w, t in zip(ens.members, ens.weights, ens.temperatures, strict=True)]
    return Source(name=name, run=run, module=module.eval(), classes=ens.classes, preprocess=first.preprocess,
                  datasets=datasets, parity_split=split, parity_inputs=inputs,
                  parity_reference=np.exp(log_probs[:len(inputs)].astype(np.float64)), members=members)


# --- the bundle's small files --------------------------------------------------------------------------
def labels_json(classes: list[dict]) -> dict:
    return {"classes": [{"index": i, "id": c["id"], "name": c.get("name") or c["id"],
                         "display_names": dict(c.get("display_names") or {})} for i, c in enumerate(classes)]}


def preprocess_json(preprocess: dict) -> dict:
    keys = ("size", "resize", "crop_boxes", "pad", "mean", "std")
    return {k: list(preprocess[k]) if k in ("mean", "std") else preprocess[k] for k in keys}


def calibration_json(name: str, *, engine: Engine) -> dict:
    from snapid.evaluate.calibrate import has_calibration, stored_calibration

    stored = stored_calibration(name, engine=engine)
    temperature, threshold = float(stored["temperature"]), float(stored["threshold"])
    if not (np.isfinite(temperature) and temperature > 0 and 0.0 <= threshold <= 1.0):
        raise onnx_export.ExportError(f"run {name!r}: stored calibration temperature {temperature} / threshold "
                                      f"{threshold} is out of range; run `snapid eval {name}` again to refit it")
    return {"temperature": temperature, "threshold": threshold, "calibrated": has_calibration(name, engine=engine),
            "target_accuracy": stored.get("target_accuracy"), "target_coverage": stored.get("target_coverage")}


def recorded_metrics(name: str, run: dict, *, engine: Engine) -> dict[str, dict]:
    """Headline figures per split: the evaluation artifacts when present, else the training summary."""
    with transaction(engine) as s:
        found = {a["kind"]: a["meta"] for a in track.artifacts(s, name=name)}
    metrics = {split: found[f"eval_{split}"] for split in ("test", "val") if f"eval_{split}" in found}
    if metrics:
        return metrics
    summary = run.get("summary") or {}
    for split in ("test", "val"):
        figures = {k: summary[f"{split}_{k}"] for k in ("top1", "top5", "macro_f1") if f"{split}_{k}" in summary}
        if figures:
            metrics[f"{split} (training summary)"] = figures
    return metrics


def detector_metrics(run: str, *, engine: Engine) -> dict[str, dict]:
    """A detector run's mAP per split, from its training summary ({} when it recorded none)."""
    with transaction(engine) as s:
        summary = track.get_run(s, name=run).get("summary") or {}
    found = {split: {k: summary[f"{split}_{k}"] for k in ("map50", "map") if f"{split}_{k}" in summary}
             for split in ("test", "val")}
    return {split: figures for split, figures in found.items() if figures}


def knowledge_snapshot(dataset: str, *, engine: Engine) -> bytes | None:
    """The dataset's knowledge cards and rules as knowledge.json, or None when it has none."""
    from snapid.knowledge.store import snapshot

    snap = snapshot(dataset, engine=engine)
    if snap is None:
        return None
    data = _json(snap)
    if len(data) > MAX_JSON_BYTES:
        raise onnx_export.ExportError(f"dataset {dataset!r}: its knowledge snapshot is {len(data)} bytes, over the "
                                      f"bundle limit of {MAX_JSON_BYTES}")
    return data


def _json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode()


# --- export ------------------------------------------------------------------------------------------
def export_run(name: str, out: Path | None = None, *, workspace: Workspace, engine: Engine, int8: bool = False,
               force: bool = False, fmt: str = "onnx", zip_: bool = False, progress: Progress | None = None,
               max_int8_drop: float = MAX_DROP_POINTS, detector: str | None = None,
               license: str | None = None, references: int = refs.DEFAULT_PER_CLASS,
               subsets: dict[str, Path] | None = None) -> Bundle:
    """Export run or ensemble ``name`` to a bundle folder at ``out`` (default: workspace.bundles/name), plus
    ``<out>.snapid`` with ``zip_``; with ``detector`` (a detect run of the same dataset) the bundle also holds
    detector.onnx and detector.json; ``license``: the model card's license (a Hub license id; default unknown);
    ``references``: reference photos per class in the bundle (0: none; see export/references.py); ``subsets``:
    named candidate subsets, {name: file listing class ids or names} (export/subsets.py).
    Raises ParityError / Int8Refused / ExportError, writing nothing."""
    say = progress or (lambda step: None)
    if fmt not in FORMATS:
        raise SnapidError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}", code="usage", status=422)
    if int8 and fmt != "onnx":
        raise SnapidError("--int8 quantises ONNX graphs; it cannot be combined with --format torchscript",
                          code="usage", status=422)
    out = Path(out) if out is not None else workspace.bundles / name
    say(f"loading {name}")
    source = load_source(name, workspace=workspace, engine=engine)
    subsets_file = subset_files.subsets_json(source.classes, subsets or {})  # refused now, naming unknown classes
    if not source.members and not has_calibration(name, engine=engine):
        # an uncalibrated bundle would never answer "not sure" (threshold 0): fit it now, as `snapid eval` does
        say(f"{name} has no calibration yet: fitting the temperature and the 'unknown' threshold "
            "on its validation split")
        calibrate_for_serving(name, workspace=workspace, engine=engine)
    say(f"exporting {fmt} and checking it against torch on {len(source.parity_inputs)} {source.parity_split} images")
    model_file, model_bytes, parity = _checked_model(source, fmt)
    int8_report = None
    if int8:
        say("int8: calibrating on the training cache")
        model_bytes, int8_report = int8_model(
            model_bytes, train_set=source.datasets["train"], val_set=source.datasets["val"],
            preprocess=source.preprocess, where=name, max_drop_points=max_int8_drop, force=force,
            on_batch=lambda done, total: say(f"int8: calibration batch {done}/{total}"))
    extra = _detector_files(detector, source, workspace=workspace, engine=engine, say=say) if detector else {}
    reference_files = _reference_files(source, model_bytes, references, say) if fmt == "onnx" else {}
    extra.update(reference_files)
    extra.update({subset_files.FILE: subsets_file} if subsets_file else {})
    say("writing the bundle")
    bundle = _write(source, out, model_file, model_bytes, fmt=fmt, parity=parity, int8_report=int8_report,
                    engine=engine, extra=extra, license=license,
                    references=refs.summary(reference_files) if reference_files else None)
    archive = zip_bundle(out, out.with_name(out.name + ".snapid")) if zip_ else None
    _record(source.name, bundle, out, archive, engine=engine)
    return bundle


def _checked_model(source: Source, fmt: str) -> tuple[str, bytes, dict]:
    """(file name, model bytes, parity report) for the bundle; ParityError when the export drifts from torch."""
    size = source.preprocess["size"]
    explained = None
    if fmt == "torchscript":
        model_file, model_bytes = "model.pt", onnx_export.to_torchscript(source.module, size)
        run, where = _torchscript_runner(model_bytes), f"{source.name} (TorchScript)"
    else:
        embedded = refs.with_embedding(source.module)  # logits and the pooled embedding (reference photos)
        outputs = (onnx_export.OUTPUT, onnx_export.EMBEDDING) if embedded else (onnx_export.OUTPUT,)
        explained, _ = explain.graph(source.module, size=size, embedding=embedded is not None)  # + "cam" (issue 19)
        model_file, model_bytes = "model.onnx", onnx_export.to_onnx(
            explained or embedded or source.module, size, where=source.name,
            outputs=(*outputs, explain.CAM_OUTPUT) if explained else outputs)
        run, where = onnx_export.make_session(model_bytes), source.name
    parity = onnx_export.check_parity(run, source.parity_inputs, source.parity_reference, where=where)
    if fmt != "torchscript" and explained is not None and len(source.parity_inputs):
        parity["cam"] = explain.check_cam_parity(run, explained, source.parity_inputs, where=where)
    if fmt != "torchscript" and refs.has_embedding(run) and len(source.parity_inputs):
        parity["embedding"] = refs.check_embedding_parity(run, source.module, source.parity_inputs, where=where)
    return model_file, model_bytes, {**parity, "split": source.parity_split}


def _reference_files(source: Source, model_bytes: bytes, per_class: int, say: Progress) -> dict[str, bytes]:
    """The reference index from the training split, embedded by the graph the bundle will serve (int8 too)."""
    session = onnx_export.make_session(model_bytes)
    if per_class <= 0 or not refs.has_embedding(session):
        if per_class > 0:
            say("no reference photos: an ensemble's graph gives no single embedding")
        return {}
    say(f"reference photos: choosing up to {per_class} per class from the training split")
    files = refs.build_index(session, source.datasets["train"], source.preprocess, source.classes,
                             per_class=per_class, say=say, held_out=source.datasets.get("val"))
    info = refs.summary(files)
    bound = refs.bound_bytes(len(source.classes), per_class, info.get("dim", 0))
    held = f" and the embeddings of {info['held_out']} validation photos (for add-class)" \
        if info.get("held_out") else ""
    say(f"reference photos: {info['photos']} photos of {info['classes']} classes{held} add "
        f"{info['bytes'] / 1e6:.2f} MB to the bundle (at most {bound / 1e6:.2f} MB for {len(source.classes)} "
        f"classes x {per_class})")
    return files


def _detector_files(detector: str, source: Source, *, workspace: Workspace, engine: Engine, say: Progress) -> dict:
    """detector.onnx + detector.json for ``detector``, refused unless it is a detect run on the classifier's
    dataset; the crop padding comes from the classifier's preprocess, so serving crops as prepare did."""
    from snapid.export.detector import export_detector

    with transaction(engine) as s:
        run = track.get_run(s, name=detector)
    if run["kind"] != "detect" or run["dataset"] != source.run["dataset"]:
        raise onnx_export.ExportError(f"--detector {detector!r}: a {run['kind']} run on dataset {run['dataset']!r}; "
                                      f"expected a detect run on {source.run['dataset']!r}, "
                                      f"the dataset of {source.name!r}")
    say(f"exporting detector {detector} and checking it against torch")
    onnx_bytes, spec = export_detector(detector, workspace=workspace, engine=engine,
                                       pad=float(source.preprocess["pad"]))
    return {"detector.onnx": onnx_bytes, "detector.json": _json(spec)}


def _torchscript_runner(model_bytes: bytes) -> Callable[[np.ndarray], np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated in torch 2.15
        module = torch.jit.load(io.BytesIO(model_bytes), map_location="cpu")

    def run(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(inputs)).numpy()

    return run


def _write(source: Source, out: Path, model_file: str, model_bytes: bytes, *, fmt: str, parity: dict,
           int8_report: dict | None, engine: Engine, extra: dict | None = None, license: str | None = None,
           references: dict | None = None) -> Bundle:
    run, name = source.run, source.name
    version = f"{name}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    calibration = calibration_json(name, engine=engine)
    metrics = recorded_metrics(name, run, engine=engine)
    detector = json.loads((extra or {}).get("detector.json", b"null"))
    export = {"format": fmt, "parity": parity, "int8": int8_report, "detector": detector is not None}
    model_config = source.module.config() if hasattr(source.module, "config") else {"model": "ensemble"}
    card = model_card(title=name, version=version, run=run, model=model_config, preprocess=source.preprocess,
                      classes=source.classes, split_sizes={s: len(d) for s, d in source.datasets.items()},
                      metrics=metrics, calibration=calibration, export=export, members=source.members,
                      license=license,
                      detector_metrics=detector_metrics(detector["run"], engine=engine) if detector else None)
    files = {model_file: model_bytes, "labels.json": _json(labels_json(source.classes)),
             "preprocess.json": _json(preprocess_json(source.preprocess)), "calibration.json": _json(calibration),
             "card.md": card.encode()}
    knowledge = knowledge_snapshot(run["dataset"], engine=engine)
    if knowledge is not None:
        files["knowledge.json"] = knowledge
    files.update(extra or {})
    info = {"name": name, "version": version, "run": name, "kind": run["kind"], "dataset": run["dataset"],
            "dataset_version": run["dataset_version"], "model": run["model"], "classes": len(source.classes),
            "metrics": metrics, "int8": int8_report is not None, "int8_report": int8_report, "parity": parity,
            "opset": onnx_export.OPSET if fmt == "onnx" else None, "members": source.members,
            "detector": detector, "references": references,
            "explain": explain.manifest_entry(source.module, parity, size=source.preprocess["size"]) if fmt == "onnx"
            else None,
            "exported_with": {"torch": torch.__version__, "onnxruntime": ort.__version__}}
    return write_bundle(out, files, info=info, fmt=FORMATS[fmt])


def _record(name: str, bundle: Bundle, out: Path, archive: Path | None, *, engine: Engine) -> None:
    meta = {"version": bundle.version, "format": bundle.manifest["format"], "int8": bundle.manifest["int8"],
            "archive": str(archive) if archive else None,
            "parity_max_abs_diff": bundle.manifest["parity"]["max_abs_diff"],
            "int8_report": bundle.manifest.get("int8_report")}
    with transaction(engine) as s:
        track.record_artifact(s, name=name, kind="bundle", path=str(out), sha256=bundle.sha256, meta=meta)
