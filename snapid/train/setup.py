"""Everything a run needs before its first epoch: the prepared data, the loss, the device."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snapid.data.cache import PrepareParams, index_path
from snapid.data.cached_dataset import CachedDataset
from snapid.data.manifest import Manifest
from snapid.errors import SnapidError
from snapid.train.config import TrainConfig
from snapid.workspace import Workspace

IMBALANCE_AUTO_RATIO = 5.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SnapidError(f"--device {name}: no CUDA GPU is visible to PyTorch", code="bad_config")
    return device


def crop_mode(manifest: Manifest, config: TrainConfig) -> bool:
    """Train on box crops when asked, or (auto) when most photos carry labelled boxes."""
    if config.crop != "auto":
        return config.crop == "boxes"
    boxed = sum(1 for s in manifest.samples if any(b.label or s.label for b in s.boxes))
    return boxed >= 0.5 * max(len(manifest.samples), 1)


def prepare_params(manifest: Manifest, config: TrainConfig, input_size: int) -> PrepareParams:
    return PrepareParams(size=config.size or input_size, resize=config.resize, crop_boxes=crop_mode(manifest, config),
                         pad=config.pad)


def load_splits(workspace: Workspace, manifest: Manifest, params: PrepareParams):
    """(train, val, test) CachedDatasets from a prepared cache."""
    index = index_path(workspace, params, manifest.name, manifest.version)
    train, val, test = (CachedDataset(index, split=s) for s in ("train", "val", "test"))
    if len(train) == 0:
        raise SnapidError(f"dataset {manifest.name!r} v{manifest.version} has no training images", code="bad_dataset")
    if len(val) == 0:
        raise SnapidError(f"dataset {manifest.name!r} v{manifest.version} has no validation images: "
                          "re-import it (a val split is carved from train automatically)", code="bad_dataset")
    return train, val, test


def class_weights(counts: np.ndarray, mode: str) -> tuple[torch.Tensor | None, str]:
    """Loss weights for class imbalance, and the mode actually used ('auto' resolved)."""
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    if mode == "auto":
        mode = "effective" if ratio > IMBALANCE_AUTO_RATIO else "none"
    if mode in ("none", "sampler"):
        return None, mode
    n = np.maximum(counts.astype(np.float64), 1.0)
    if mode == "inverse":
        w = 1.0 / n
    else:  # effective number of samples (Cui et al. 2019), beta = 0.999
        beta = 0.999
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    w = w / w[counts > 0].mean()
    return torch.tensor(w, dtype=torch.float32), mode


def sample_weights(labels: np.ndarray, counts: np.ndarray) -> torch.Tensor:
    """Per-sample weights for a balanced sampler: each class drawn equally often."""
    return torch.tensor(1.0 / np.maximum(counts[labels], 1), dtype=torch.double)


def losses(weights: torch.Tensor | None, smoothing: float, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(training loss, plain validation loss): validation is unweighted and unsmoothed, so runs compare."""
    train_loss = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None,
                                     label_smoothing=smoothing)
    return train_loss, nn.CrossEntropyLoss()


def make_optimizer(params, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The configured optimiser over ``params`` (parameters, or groups each with its own "lr")."""
    common = {"weight_decay": cfg.weight_decay, **({"lr": lr} if lr is not None else {})}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.momentum > 0, **common)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, alpha=cfg.alpha, momentum=cfg.momentum, **common)
    return torch.optim.AdamW(params, **common)


def param_groups(model, unfreeze: int, lr: float, decay: float) -> list[dict]:
    """The head and the top group at ``lr``; each group toward the stem gets ``decay`` times less."""
    groups = model.groups()
    head, backbone = groups[-1], groups[:-1]
    chosen = backbone if unfreeze == 0 else backbone[-unfreeze:]
    out = [{"params": head, "lr": lr}]
    rate = lr
    for group in reversed(chosen):
        out.append({"params": group, "lr": rate})
        rate *= decay
    return out
