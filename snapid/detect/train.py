"""`snapid detect train`: a torchvision detector on box annotations, tracked like classification.

SGD with momentum, linear warm-up then cosine decay per step (the torchvision detection recipe);
the backbone's stem and BatchNorm stay frozen (models.py). Each epoch: train, validate (loss and
mAP@0.5), write the epoch to the database, save `last` (and `best` when mAP@0.5 improved). Epoch e
reseeds every RNG from (seed, e), so a resumed run replays what an uninterrupted one does.
Early stopping after ``patience`` epochs without a better val mAP@0.5.

``--resume RUN --epochs N`` changes the epoch budget of a stopped, crashed or completed run (see
``_resume_run``); the learning-rate schedule is then recomputed over the new total (``_fit``).
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import Engine

from snapid.detect.augment import build_detect_augment
from snapid.detect.data import collate, detection_classes, detection_split
from snapid.detect.evaluate import map_scores, predict_dataset, targets_of
from snapid.detect.models import NMS_IOU, build_detector, canonical_arch, detector_config
from snapid.errors import SnapidError
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train.checkpoint import load_checkpoint, save_checkpoint
from snapid.train.oom import in_batches
from snapid.train.progress import Reporter
from snapid.workspace import Workspace

DEFAULT_EPOCHS = 12
WARMUP_STEPS = 100
MIN_LR_FRACTION = 0.05
CLIP_NORM = 10.0


@dataclass
class DetectState:
    name: str
    folder: Path
    config: dict
    engine: Engine
    reporter: Reporter
    meta: dict = field(default_factory=dict)
    progress: dict = field(default_factory=lambda: {"next_epoch": 0, "step": 0, "best": None, "bad": 0})


def train_detector(dataset: str, *, workspace: Workspace, engine: Engine, arch: str = "fasterrcnn_mobilenet_v2",
                   size: int = 320, epochs: int | None = None, batch_size: int = 4, lr: float = 0.02,
                   class_agnostic: bool = True, patience: int = 4, name: str | None = None,
                   resume: str | None = None, reporter: Reporter | None = None, augment: str = "light",
                   pretrained: bool = True, pad: float = 0.1, seed: int = 0, version: int | None = None) -> dict:
    """Train (or resume) a detector run; returns its summary. ``pad`` is the crop padding of the paired
    classifier (recorded for export/serving). With ``resume`` the run's saved config wins over the
    other arguments, so a resumed run finishes exactly the run that was started, except ``epochs``:
    given, it becomes the run's new epoch budget (a completed run continues when it is above the
    epochs done). ``epochs=None`` means DEFAULT_EPOCHS for a new run, the saved budget on resume."""
    config = {"arch": canonical_arch(arch), "size": int(size),
              "epochs": int(DEFAULT_EPOCHS if epochs is None else epochs), "batch_size": int(batch_size),
              "lr": float(lr), "class_agnostic": bool(class_agnostic), "patience": int(patience),
              "augment": augment, "pretrained": bool(pretrained), "pad": float(pad), "seed": int(seed)}
    _check(config)
    reporter = reporter or Reporter()
    if resume:   # every refusal happens here, before the run is touched
        run, saved = _resume_run(resume, epochs, engine, reporter)
    else:
        run, saved = _open_run(dataset, config, workspace, engine, name, version), None
    state = DetectState(run["name"], Path(run["run_dir"]), run["config"], engine, reporter)
    try:
        model, train_set, val_set, test_set = _build(state, run, saved)
        with transaction(engine) as s:
            track.start_run(s, name=state.name, host=socket.gethostname(), pid=os.getpid())
        _fit(state, model, train_set, val_set)
        summary = _finish(state, test_set)
    except KeyboardInterrupt:
        _close(state, "stopped", f"stopped by the user; continue with `snapid detect train --resume {state.name}`")
        raise
    except BaseException as exc:
        _close(state, "failed", exc.message if isinstance(exc, SnapidError) else f"{type(exc).__name__}: {exc}")
        raise
    return summary


def _check(config: dict) -> None:
    bad = [(k, config[k]) for k in ("epochs", "batch_size", "patience") if config[k] < 1]
    bad += [("lr", config["lr"])] if not 0 < config["lr"] < 1 else []
    bad += [("pad", config["pad"])] if not 0 <= config["pad"] <= 2 else []
    if bad:
        raise SnapidError("; ".join(f"{k}={v!r} is out of range" for k, v in bad), code="bad_config", status=400)


def _resume_run(resume: str, epochs: int | None, engine: Engine, reporter: Reporter) -> tuple[dict, tuple]:
    """The run to continue and its `last` checkpoint (weights, meta, state), with ``epochs`` (when
    given) as its new budget, recorded in the run's config. Lower than the epochs already done is
    refused; a completed run continues only when ``epochs`` is above them."""
    with transaction(engine) as s:
        run = track.get_run(s, name=resume)
    if run["kind"] != "detect":
        raise SnapidError(f"run {resume!r} is a {run['kind']} run; `snapid train --resume` continues it",
                          code="bad_run", status=422)
    completed = run["status"] == "completed"
    if completed and epochs is None:
        raise SnapidError(f"run {resume!r} already completed; start a new one with --name, or give --epochs "
                          f"above {run['config']['epochs']} to continue it", code="run_completed", status=409)
    saved = load_checkpoint(Path(run["run_dir"]), "last", with_state=True)
    if epochs is None:
        return run, saved
    progress = saved[2]["progress"]
    done = int(progress["next_epoch"])
    if epochs < done:
        raise SnapidError(f"--epochs {epochs} is fewer than the {done} epochs run {resume!r} has already done",
                          code="bad_config", status=400)
    if completed and epochs == done:
        raise SnapidError(f"run {resume!r} already completed (epochs done: {done}); give --epochs above {done} to "
                          "continue it, or start a new one with --name", code="run_completed", status=409)
    if completed and progress["bad"] >= run["config"]["patience"]:
        progress["bad"] = 0   # it stopped early: the new budget restarts the patience count
        reporter.note(f"{resume} stopped early at epoch {done - 1}; patience restarts with the new budget")
    if epochs != run["config"]["epochs"]:
        reporter.note(f"{resume}: epoch budget {run['config']['epochs']} → {epochs}")
        config = dict(run["config"], epochs=int(epochs))
        with transaction(engine) as s:
            track.set_config(s, name=resume, config=config)
        run = dict(run, config=config)
    return run, saved


def _open_run(dataset, config, workspace, engine, name, version) -> dict:
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=dataset, version=version)
    if not any(sample.boxes for sample in manifest.samples):
        raise SnapidError(f"dataset {dataset!r} v{manifest.version} has no boxes: a detector needs box annotations "
                          "(COCO, VOC, YOLO or AI-Hub)", code="no_boxes", status=422)
    with transaction(engine) as s:
        manifest_version = manifest.version
        run_name = name or track.unique_name(s, f"{dataset}-detect-{config['arch'].split('_')[0]}")
        run = track.create_run(s, name=run_name, dataset=dataset, dataset_version=manifest_version,
                               model=config["arch"], config=config, run_dir=str(workspace.runs / run_name),
                               monitor="val_map50", kind="detect")
    Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
    return run


def _build(state: DetectState, run: dict, saved: tuple | None):
    """Datasets and model; ``saved`` is the `last` checkpoint of a resumed run."""
    resuming = saved is not None
    config = state.config
    with transaction(state.engine) as s:
        manifest = dataset_store.load_manifest(s, name=run["dataset"], version=run["dataset_version"])
    classes = detection_classes(manifest, config["class_agnostic"])
    if not classes:
        raise SnapidError(f"dataset {manifest.name!r} v{manifest.version} has no labelled boxes for a per-class "
                          "detector: try --class-agnostic", code="no_boxes", status=422)
    size = config["size"]
    train_set = detection_split(manifest, "train", size=size, classes=classes,
                                augment=build_detect_augment(config["augment"]))
    val_set = detection_split(manifest, "val", size=size, classes=classes)
    test_set = detection_split(manifest, "test", size=size, classes=classes)
    if not len(train_set):
        raise SnapidError(f"dataset {manifest.name!r} has no training photos with boxes", code="no_boxes", status=422)
    if not len(val_set):
        state.reporter.note("no validation photos with boxes: early stopping watches the training photos")
        val_set = detection_split(manifest, "train", size=size, classes=classes)
    torch.manual_seed(config["seed"])   # the heads' initial weights
    model = build_detector(config["arch"], len(classes) + 1, pretrained_backbone=config["pretrained"] and not resuming,
                           size=size)
    dconfig = detector_config(config["arch"], len(classes) + 1, size)
    names = {c.id: c.name for c in manifest.classes}
    state.meta = {"run": state.name, "dataset": manifest.name, "dataset_version": manifest.version,
                  "detector": dconfig, "classes": classes, "class_names": [names.get(c, c) for c in classes],
                  "class_agnostic": config["class_agnostic"], "size": size, "letterbox": True,
                  "letterbox_align": "center", "pad": config["pad"], "score_threshold": 0.5, "nms_iou": NMS_IOU,
                  # torchvision detection models normalise inside (GeneralizedRCNNTransform): feed [0, 1] RGB
                  "normalizes_input": True, "mean": dconfig["mean"], "std": dconfig["std"], "config": config}
    if resuming:
        weights, _, train_state = saved
        model.load_state_dict(weights)
        state.progress = dict(train_state["progress"])
        state.meta["optimizer"] = train_state["optimizer"]
        state.reporter.note(f"resuming {state.name} at epoch {state.progress['next_epoch']}")
    return model, train_set, val_set, test_set


def _optimizer(model, config: dict, saved: dict | None) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config["lr"], momentum=0.9, weight_decay=1e-4)
    if saved is not None:
        opt.load_state_dict(saved)
    return opt


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first steps, then cosine down to MIN_LR_FRACTION of the base rate."""
    warm = min(WARMUP_STEPS, max(1, total // 5))
    if step < warm:
        return base * (0.1 + 0.9 * step / warm)
    t = min(1.0, (step - warm) / max(1, total - warm))
    return base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def _fit(state: DetectState, model, train_set, val_set) -> None:
    config, p = state.config, state.progress
    optimizer = _optimizer(model, config, state.meta.pop("optimizer", None))
    steps_per_epoch = math.ceil(len(train_set) / config["batch_size"])
    # The schedule is always laid over the run's current budget. A budget raised on resume redraws
    # it as if the run had started with the new total, from the step reached: the learning rate
    # jumps from the old schedule's floor to where the new cosine stands at that step, then decays
    # to MIN_LR_FRACTION at the new end (a warm restart, not a continuation of the decayed rate).
    total = steps_per_epoch * config["epochs"]
    for epoch in range(p["next_epoch"], config["epochs"]):
        if p["bad"] >= config["patience"]:
            break
        _seed(config["seed"], epoch)
        started = time.perf_counter()
        train_loss, seen = _train_epoch(state, model, train_set, optimizer, total, epoch)
        metrics = _validate(model, val_set, state.meta["classes"])
        seconds = time.perf_counter() - started
        metrics.update(train_loss=train_loss, lr=optimizer.param_groups[0]["lr"], seconds=seconds,
                       images_per_s=seen / seconds)
        _end_epoch(state, model, optimizer, epoch, metrics)


def _seed(seed: int, epoch: int) -> None:
    torch.manual_seed(seed * 10007 + epoch)
    np.random.seed((seed * 10007 + epoch) % (2**32))


def _train_epoch(state: DetectState, model, train_set, optimizer, total: int, epoch: int) -> tuple[float, int]:
    config, p = state.config, state.progress
    loader = torch.utils.data.DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(config["seed"] * 7919 + epoch))
    model.train()
    losses, seen, started = [], 0, time.perf_counter()
    state.reporter.phase(f"epoch {epoch}", len(loader))
    chunk = config["batch_size"]  # halved for the rest of the epoch when a step runs out of GPU memory
    for i, (pictures, targets) in enumerate(loader, start=1):
        def step(start: int, stop: int, pictures=pictures, targets=targets) -> None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(p["step"], total, config["lr"])
            optimizer.zero_grad(set_to_none=True)
            loss = sum(model(pictures[start:stop], targets[start:stop]).values())
            if not torch.isfinite(loss):
                raise SnapidError(f"the training loss became {float(loss)} at epoch {epoch}; try a lower --lr "
                                  f"than {config['lr']}", code="diverged", status=500)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([q for g in optimizer.param_groups for q in g["params"]], CLIP_NORM)
            optimizer.step()
            p["step"] += 1
            losses.append(float(loss.detach()))

        chunk = in_batches(len(pictures), chunk, step, note=state.reporter.note, what="detector training")
        seen += len(pictures)
        state.reporter.progress(i, len(loader), seen / (time.perf_counter() - started))
    return float(np.mean(losses)), seen


@torch.no_grad()
def _validate(model, val_set, classes: list[str]) -> dict:
    """val loss (the model's training losses, without gradients) and mAP on the validation photos."""
    model.train()   # torchvision detectors only return losses in training mode ...
    for module in model.modules():   # ... but SSDLite's heads have BatchNorm: keep val photos out of its statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    losses, chunk = [], 4
    for pictures, targets in torch.utils.data.DataLoader(val_set, batch_size=4, collate_fn=collate):
        chunk = in_batches(len(pictures), chunk, lambda a, b, pictures=pictures, targets=targets: losses.append(
            float(sum(model(pictures[a:b], targets[a:b]).values()))), what="detector validation")
    scores = map_scores(predict_dataset(model, val_set), targets_of(val_set), classes)
    # the runs table has classification columns: mAP@0.5 goes in `top1` so the dashboard draws it
    return {"val_loss": float(np.mean(losses)), "top1": scores["map50"] or 0.0, "map50": scores["map50"] or 0.0,
            "map": scores["map"] or 0.0}


def _end_epoch(state: DetectState, model, optimizer, epoch: int, metrics: dict) -> None:
    p = state.progress
    improved = p["best"] is None or metrics["map50"] > p["best"]
    if improved:
        p["best"], p["bad"] = metrics["map50"], 0
    else:
        p["bad"] += 1
    p["next_epoch"] = epoch + 1
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    meta = dict(state.meta, epoch=epoch, metrics=metrics)
    if improved:   # best before last: last's progress already counts this best
        sha = save_checkpoint(state.folder, "best", weights=weights, meta=meta)
        with transaction(state.engine) as s:
            track.record_artifact(s, name=state.name, kind="checkpoint_best", path=str(state.folder / "best.json"),
                                  sha256=sha, meta={"epoch": epoch})
    save_checkpoint(state.folder, "last", weights=weights, meta=meta,
                    state={"progress": dict(p), "optimizer": optimizer.state_dict()})
    with transaction(state.engine) as s:
        track.record_epoch(s, name=state.name, epoch=epoch, phase="detect", metrics=metrics, is_best=improved,
                           best_value=p["best"])
    state.reporter.epoch({"epoch": epoch, "phase": "detect", "best": improved, **metrics})


def _finish(state: DetectState, test_set) -> dict:
    from snapid.detect.loaded import load_detector

    model, best_meta = load_detector(state.name, engine=state.engine)
    best = best_meta["metrics"]
    summary = {"best_epoch": best_meta["epoch"], "val_map50": best["map50"], "val_map": best["map"],
               "val_loss": best["val_loss"], "parameters": sum(q.numel() for q in model.parameters()),
               "classes": len(best_meta["classes"])}
    if len(test_set):
        scores = map_scores(predict_dataset(model, test_set), targets_of(test_set), best_meta["classes"])
        summary.update(test_map50=scores["map50"], test_map=scores["map"])
    _close(state, "completed", "", summary)
    return dict(summary, name=state.name)


def _close(state: DetectState, status: str, error: str, summary: dict | None = None) -> None:
    with transaction(state.engine) as s:
        track.finish_run(s, name=state.name, status=status, summary=summary, error=error)
