"""`snapid train`: phases, early stopping, checkpoints, resume, tracking, OOM back-off.

Phase 1 (probe): backbone frozen, features computed once, the head trained on them.
Phase 2 (fine-tune): the top groups unfrozen with lower rates toward the stem, warmup then cosine.
Each epoch: validate, write the epoch to the database, save `last` (and `best` when it improved).
Epoch e reseeds every RNG from (seed, e), so a resumed run replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import copy
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import Engine

from snapid.data.cache import prepare
from snapid.errors import SnapidError
from snapid.models import factory, registry
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train import distributed as dist_util
from snapid.train.augment import Normalize, build_augment
from snapid.train.budget import parse_budget
from snapid.train.checkpoint import load_checkpoint, save_checkpoint
from snapid.train.config import TrainConfig
from snapid.train.phases import finetune_phase, probe_phase
from snapid.train.plan import needs_measuring, plan_run
from snapid.train.progress import Reporter
from snapid.train.setup import class_weights, load_splits, losses, pick_device, prepare_params
from snapid.workspace import Workspace


@dataclass
class RunState:
    """What the phases share; `progress` is what the `last` checkpoint stores for --resume."""

    name: str
    folder: Path
    config: TrainConfig
    engine: Engine
    info: dist_util.Dist
    device: torch.device
    reporter: Reporter
    meta: dict
    progress: dict = field(default_factory=lambda: {"phase": "probe", "next_epoch": 0, "phase_start": 0,
                                                    "phase_done": False, "best": None, "bad": 0})
    pending: dict = field(default_factory=dict)   # checkpoints not yet written: "best", "last"
    saved_at: float = field(default_factory=time.monotonic)
    deadline: float | None = None  # time.monotonic() by which the budget runs out: no fine-tuning epoch starts past it
    plan: dict | None = None
    finetune_epochs_run: int | None = None  # how many fine-tune epochs ran (the budget may stop them early)
    started: float = field(default_factory=time.monotonic)

    def better(self, value: float) -> bool:
        best = self.progress["best"]
        if best is None or not np.isfinite(value):
            return best is None and np.isfinite(value)
        return value < best if self.config.monitor == "val_loss" else value > best

    def monitored(self, metrics: dict) -> float:
        return {"val_top1": metrics["top1"], "val_loss": metrics["val_loss"],
                "val_macro_f1": metrics["macro_f1"]}[self.config.monitor]

    def end_epoch(self, model, epoch: int, phase: str, metrics: dict, optimizer_state: dict, extra: dict | None = None,
                  save_every_s: float = 0.0) -> bool:
        """Track one epoch (rank 0) and checkpoint it, at most every ``save_every_s`` seconds (the probe's
        head epochs take a fraction of a second; writing the whole model after each one cost more than
        the training). Returns True when the phase should stop early."""
        value = self.monitored(metrics)
        improved = self.better(value)
        p = self.progress
        if improved:
            p["best"], p["bad"] = float(value), 0
        else:
            p["bad"] += 1
        p["next_epoch"] = epoch + 1
        if self.info.main:
            weights = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}
            meta = dict(self.meta, epoch=epoch, phase=phase, metrics=_finite(metrics))
            self.pending["last"] = (weights, meta,
                                    {"progress": dict(p), "optimizer": copy.deepcopy(optimizer_state), **(extra or {})})
            if improved:
                self.pending["best"] = (weights, meta, None)
            if time.monotonic() - self.saved_at >= save_every_s:
                self.save()
            with transaction(self.engine) as s:
                track.record_epoch(s, name=self.name, epoch=epoch, phase=phase, metrics=metrics, is_best=improved,
                                   best_value=p["best"])
            self.reporter.epoch({"epoch": epoch, "phase": phase, "best": improved, **metrics})
        return p["bad"] >= self.config.patience

    def save(self) -> None:
        """Write the pending checkpoints: `best` before `last`, whose progress already counts that best."""
        best = self.pending.pop("best", None)
        if best is not None:
            weights, meta, _ = best
            sha = save_checkpoint(self.folder, "best", weights=weights, meta=meta)
            with transaction(self.engine) as s:
                track.record_artifact(s, name=self.name, kind="checkpoint_best", path=str(self.folder / "best.json"),
                                      sha256=sha, meta={"epoch": meta["epoch"]})
        last = self.pending.pop("last", None)
        if last is not None:
            weights, meta, state = last
            save_checkpoint(self.folder, "last", weights=weights, meta=meta, state=state)
        self.saved_at = time.monotonic()


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def _finite(metrics: dict) -> dict:
    return {k: (float(v) if v is not None and np.isfinite(v) else None) for k, v in metrics.items()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(engine: Engine) -> list[str]:
    """Mark runs whose process died (kill -9, power loss) as failed and resumable."""
    with transaction(engine) as s:
        return track.reap_stale_runs(s, host=socket.gethostname(), is_alive=_pid_alive)


def train(dataset: str, config: TrainConfig, *, workspace: Workspace, engine: Engine, name: str | None = None,
          resume: str | None = None, version: int | None = None, reporter: Reporter | None = None,
          kind: str = "train", parent: str | None = None, workers: int = 1) -> dict:
    """Train (or resume) one run; returns its summary. Under torchrun every rank calls this."""
    reporter = reporter or Reporter()
    device = pick_device(config.device)
    info = dist_util.init(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.main:
        reap(engine)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    started = time.monotonic()
    plan = None
    if not resume:
        config, plan = _planned(config, dataset, version, engine, device, info, started)
        if plan is not None:
            reporter.note(f"plan: {plan.describe()}")

    run, config = _open_run(dataset, config, workspace, engine, info, name, resume, version, kind, parent)
    state = RunState(run["name"], Path(run["run_dir"]), config, engine, info, device, reporter, {})
    state.started = started
    if config.budget:
        state.deadline = started + parse_budget(config.budget)
    state.plan = plan.as_dict() if plan is not None else None
    try:
        model, data, test_set = _build(state, workspace, run, resume is not None, workers)
        if info.main:
            with transaction(engine) as s:
                track.start_run(s, name=state.name, host=socket.gethostname(), pid=os.getpid())
        if config.probe_epochs and state.progress["phase"] == "probe" and not state.progress["phase_done"]:
            probe_phase(state, model, **data)
            data["resume_state"] = None
        if config.finetune_epochs:
            if state.progress["phase"] == "probe":
                _best_into(state, model)
                state.progress.update(phase="finetune", phase_start=state.progress["next_epoch"], phase_done=False,
                                      bad=0)
            if not state.progress["phase_done"]:
                finetune_phase(state, model, **data)
        summary = _finish(state, model, test_set, data["normalize"], data["val_loss"]) if info.main else {}
    except KeyboardInterrupt:
        _save_quietly(state)
        _close(state, "stopped", f"stopped by the user; continue with `snapid train --resume {state.name}`")
        raise
    except BaseException as exc:
        _save_quietly(state)
        _close(state, "failed", exc.message if isinstance(exc, SnapidError) else f"{type(exc).__name__}: {exc}")
        raise
    finally:
        dist_util.shutdown(info)
    return summary


def _planned(config: TrainConfig, dataset: str, version: int | None, engine: Engine, device: torch.device,
             info: dist_util.Dist, started: float):
    """The config with the budget's plan filled in (snapid.train.plan), and the plan; every rank plans the same
    (rank 0 measures, the others take its plan)."""
    if not needs_measuring(config, device):
        return config, None
    plan = None
    if info.main:
        with transaction(engine) as s:
            manifest = dataset_store.load_manifest(s, name=dataset, version=version)
        counts: dict[str, int] = {}
        for sample in manifest.samples:
            counts[sample.split] = counts.get(sample.split, 0) + 1
        config, plan = plan_run(config, counts=counts, device=device, started=started)
    config, plan = dist_util.broadcast(info, (config, plan))
    return config, plan


def _build(state: RunState, workspace: Workspace, run: dict, resuming: bool, workers: int):
    """Data, model, losses and augmentation for a run; fills state.meta (what checkpoints record)."""
    config, info, device, engine = state.config, state.info, state.device, state.engine
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=run["dataset"], version=run["dataset_version"])
    spec = registry.get_spec(config.model)
    params = prepare_params(manifest, config, spec.input_size)
    if info.main:  # the others wait for rank 0's cache, then read it
        state.reporter.phase(f"preparing {manifest.name} v{manifest.version} at {params.size} px", 0)
        prepare(manifest, workspace, params, workers=workers, progress=state.reporter.progress)
    dist_util.barrier(info)
    train_set, val_set, test_set = load_splits(workspace, manifest, params)
    torch.manual_seed(config.seed)  # the head's (and a scratch backbone's) initial weights
    model = factory.create(config.model, len(train_set.classes), pretrained=config.pretrained and not resuming,
                           weights_path=config.weights, head=config.head, head_dims=config.head_dims,
                           dropout=config.dropout)
    weights, loss_mode = class_weights(train_set.class_counts(), config.imbalance)
    train_loss, val_loss = losses(weights, config.label_smoothing, device)
    state.meta = {"run": run["name"], "dataset": manifest.name, "dataset_version": manifest.version,
                  "classes": train_set.classes, "model": model.config(), "config": config.public(),
                  "preprocess": {"size": params.size, "resize": params.resize, "crop_boxes": params.crop_boxes,
                                 "pad": params.pad, "mean": list(spec.mean), "std": list(spec.std)},
                  "imbalance": loss_mode}
    resume_state = _restore(state, model) if resuming else None
    model.to(device)
    data = dict(train=train_set, val=val_set, train_loss=train_loss, val_loss=val_loss, resume_state=resume_state,
                normalize=Normalize(spec.mean, spec.std).to(device),
                augment=build_augment(config.augment, params.size, spec.mean, spec.std,
                                      tuple(config.rrc_scale)).to(device))
    return model, data, test_set


def _open_run(dataset, config, workspace, engine, info, name, resume, version, kind,
              parent) -> tuple[dict, TrainConfig]:
    """Create the run row (rank 0), or reopen it for --resume with its saved config."""
    if resume:
        with transaction(engine) as s:
            run = track.get_run(s, name=resume)
        if run["status"] == "completed":
            raise SnapidError(f"run {resume!r} already completed; start a new one with --name", code="run_completed",
                              status=409)
        return run, TrainConfig(**run["config"])
    run = None
    if info.main:
        with transaction(engine) as s:
            manifest_version = version or dataset_store.load_manifest_version(s, name=dataset)
            base = name or f"{dataset}-{config.model.replace('/', '-')}"
            run_name = name or track.unique_name(s, base)
            folder = workspace.runs / run_name
            run = track.create_run(s, name=run_name, dataset=dataset, dataset_version=manifest_version,
                                   model=config.model, config=config.public(), run_dir=str(folder),
                                   monitor=config.monitor, kind=kind, parent=parent)
        Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
    return dist_util.broadcast(info, run), config


def _restore(state: RunState, model) -> dict | None:
    """Load the `last` checkpoint: weights into the model, progress into the state."""
    weights, _, saved = load_checkpoint(state.folder, "last", with_state=True)
    model.load_state_dict(weights)
    state.progress = dict(saved["progress"])
    state.reporter.note(f"resuming {state.name} at epoch {state.progress['next_epoch']} ({state.progress['phase']})")
    return saved


def _best_into(state: RunState, model) -> None:
    """Fine-tuning starts from the best probe head, not the last one."""
    if (state.folder / "best.json").exists():
        weights, _, _ = load_checkpoint(state.folder, "best")
        unwrap(model).load_state_dict(weights)


def _finish(state: RunState, model, test_set, normalize, val_loss) -> dict:
    from snapid.data.cached_dataset import make_loader
    from snapid.metrics import macro_topk
    from snapid.train.features import fast_dtype, frozen_backbone
    from snapid.train.loop import predict_images, score

    _best_into(state, model)
    model.to(state.device)
    _, best_meta, _ = load_checkpoint(state.folder, "best")
    best = best_meta["metrics"]
    summary = {"name": state.name, "best_epoch": best_meta["epoch"], "val_loss": best["val_loss"],
               **{f"val_{k}": best[k] for k in ("top1", "top5", "macro_f1")}}
    if len(test_set):  # inference only: the folded (conv+BN) backbone is about 2x faster
        net = unwrap(model).eval()
        fast = torch.nn.Sequential(frozen_backbone(net), net.head).to(memory_format=torch.channels_last)
        # a quick summary figure, under the probe's bfloat16 where it is native (2x faster here);
        # `snapid eval` measures the float32 model the export will carry
        dtype = fast_dtype(state.device)
        with torch.autocast(state.device.type, dtype=dtype, enabled=dtype is not None):
            logits, labels = predict_images(fast, make_loader(test_set, 64, shuffle=False), normalize=normalize,
                                            device=state.device, channels_last=True)
        summary.update({f"test_{k.removeprefix('val_')}": v for k, v in score(logits, labels, val_loss).items()})
        summary["test_macro_top1"] = macro_topk(logits, labels, 1)
    summary["parameters"] = sum(p.numel() for p in model.parameters())
    summary["seconds"] = round(time.monotonic() - state.started, 1)
    if state.finetune_epochs_run is not None:
        summary["finetune_epochs_run"] = state.finetune_epochs_run
    if state.plan is not None:
        summary["plan"] = state.plan["text"]
    _close(state, "completed", "", summary)
    return summary


def _save_quietly(state: RunState) -> None:
    """On the way out of a failed run, keep the epochs it finished (unless saving is what failed)."""
    try:
        state.save()
    except Exception:
        pass


def _close(state: RunState, status: str, error: str, summary: dict | None = None) -> None:
    if not state.info.main:
        return
    with transaction(state.engine) as s:
        track.finish_run(s, name=state.name, status=status, summary=summary, error=error)
