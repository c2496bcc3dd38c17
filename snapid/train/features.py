"""The probe phase's trick: run the frozen backbone ONCE over the prepared cache (a few augmented
views of each training image), then train the head on the stored features for many epochs.
On a CPU that turns minutes per epoch into well under a second."""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from snapid.data.cached_dataset import CachedDataset


def frozen_backbone(model) -> nn.Module:
    """A copy of the frozen backbone with every conv + BatchNorm folded into one conv (eval mode).

    Same outputs up to float rounding; measured about 2x faster on a CPU for MobileNetV2. Models
    torch.fx cannot trace (some timm ones) run unfused."""
    backbone = copy.deepcopy(model.backbone).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        backbone = fuse(backbone)
    except Exception:  # tracing failed: correctness first, speed second
        pass
    backbone.feature_dim = model.feature_dim  # for empty slices (a DDP rank with no images)
    return backbone


def fast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast where the hardware runs it natively (CUDA; CPUs with AVX-512 BF16 or AMX):
    measured 2x faster frozen-backbone features on this CPU, 0.5 % relative change in the features,
    which a linear probe does not notice. None elsewhere (emulated bf16 would be slower)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


@torch.inference_mode()
def extract(backbone: nn.Module, dataset: CachedDataset, *, transform: nn.Module, device: torch.device, batch_size: int,
            seed: int, indices: np.ndarray | None = None, channels_last: bool = False,
            on_batch: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (float16 on the CPU, to halve memory) and labels, in dataset order.

    ``backbone``: from frozen_backbone(model), built once per phase (copying and tracing cost ~0.2 s)."""
    dtype = fast_dtype(device)
    torch.manual_seed(seed)
    order = np.arange(len(dataset)) if indices is None else indices
    feats, labels = [], []
    for start in range(0, len(order), batch_size):
        images, y = dataset.__getitems__(order[start:start + batch_size].tolist())
        x = transform(images.to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            feats.append(backbone(x).to("cpu", torch.float16))
        labels.append(y)
        if on_batch:
            on_batch(len(y))
    if not feats:
        return torch.zeros((0, backbone.feature_dim), dtype=torch.float16), torch.zeros(0, dtype=torch.int64)
    return torch.cat(feats), torch.cat(labels)


def feature_cache(backbone: nn.Module, dataset: CachedDataset, *, augment: nn.Module, normalize: nn.Module, views: int,
                  device: torch.device, batch_size: int, seed: int, channels_last: bool = False,
                  on_batch: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """View 0 is the clean image; views 1..n-1 are augmented with their own seeds (deterministic)."""
    parts = [extract(backbone, dataset, transform=normalize, device=device, batch_size=batch_size, seed=seed,
                     channels_last=channels_last, on_batch=on_batch)]
    for view in range(1, views):
        augment.train()
        parts.append(extract(backbone, dataset, transform=augment, device=device, batch_size=batch_size,
                             seed=seed * 1000 + view, channels_last=channels_last, on_batch=on_batch))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
