"""A finished run, loaded back: its best weights, classes and preprocessing, and its predictions on a
split of the prepared cache. Evaluation, calibration, ensembles and export all start here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy.engine import Engine

from snapid.data.cache import PrepareParams, index_path, prepare
from snapid.data.cached_dataset import CachedDataset
from snapid.errors import NotFound, SnapidError
from snapid.models import factory
from snapid.models.classifier import Classifier
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train.augment import Normalize
from snapid.train.checkpoint import load_checkpoint
from snapid.workspace import Workspace


@dataclass
class TrainedRun:
    name: str
    run: dict                  # the runs row (status, dataset, dataset_version, summary, ...)
    meta: dict                 # the best checkpoint's metadata: classes, model config, preprocess, metrics
    model: Classifier          # best weights, eval mode, on the CPU

    @property
    def classes(self) -> list[dict]:
        return self.meta["classes"]

    @property
    def preprocess(self) -> dict:
        """size, resize, crop_boxes, pad, mean, std: exactly what training saw."""
        return self.meta["preprocess"]

    @property
    def params(self) -> PrepareParams:
        p = self.preprocess
        return PrepareParams(size=p["size"], resize=p["resize"], crop_boxes=p["crop_boxes"], pad=p["pad"])


def load_trained(name: str, *, engine: Engine) -> TrainedRun:
    """The run's best checkpoint as a model; refuses runs that never saved one."""
    with transaction(engine) as s:
        run = track.get_run(s, name=name)
    if run["kind"] == "ensemble":
        raise SnapidError(f"{name!r} is an ensemble, not a single trained run", code="bad_run", status=422)
    folder = Path(run["run_dir"])
    if not (folder / "best.json").exists():
        raise NotFound(f"run {name!r} has no checkpoint yet (status {run['status']}); "
                       f"train it first or resume it with `snapid train --resume {name}`")
    weights, meta, _ = load_checkpoint(folder, "best")
    model = factory.from_config(meta["model"])
    model.load_state_dict(weights)
    return TrainedRun(name=name, run=run, meta=meta, model=model.eval())


def split_dataset(trained: TrainedRun, split: str, *, workspace: Workspace, engine: Engine,
                  workers: int = 1) -> CachedDataset:
    """The run's dataset version, prepared as it was for training (prepared again if the cache is gone)."""
    dataset, version = trained.run["dataset"], trained.run["dataset_version"]
    index = index_path(workspace, trained.params, dataset, version)
    if not index.exists():
        with transaction(engine) as s:
            manifest = dataset_store.load_manifest(s, name=dataset, version=version)
        prepare(manifest, workspace, trained.params, workers=workers)
    return CachedDataset(index, split=split)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, dataset: CachedDataset, preprocess: dict, *, tta: bool = False,
                   batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(logits N x C, labels N) for every item; with ``tta`` the logits of the image and its mirror are
    averaged (in log-probability space, so the result stays a valid logit for softmax)."""
    from snapid.train.features import frozen_backbone
    from snapid.train.oom import in_batches

    model.eval()
    # inference only: the conv+BN-folded channels_last backbone is about twice as fast on a CPU
    fast = torch.nn.Sequential(frozen_backbone(model), model.head).to(memory_format=torch.channels_last)
    normalize = Normalize(tuple(preprocess["mean"]), tuple(preprocess["std"]))
    out, labels = [], []

    def step(start: int, stop: int) -> None:
        images, y = dataset.__getitems__(list(range(start, stop)))
        x = normalize(images).contiguous(memory_format=torch.channels_last)
        logits = fast(x).float()
        if tta:
            mirrored = fast(torch.flip(x, dims=[3]).contiguous(memory_format=torch.channels_last)).float()
            logits = (torch.log_softmax(logits, 1) + torch.log_softmax(mirrored, 1)) / 2
        out.append(logits)
        labels.append(y)

    with torch.inference_mode():
        in_batches(len(dataset), batch_size, step, what="evaluation")  # GPU out-of-memory: halve, go on
    if not out:
        return np.zeros((0, len(dataset.classes)), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return torch.cat(out).numpy(), torch.cat(labels).numpy()
