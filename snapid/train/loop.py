"""Plain loop functions: one epoch of the head on cached features, one epoch of the network on
images, and evaluation. No classes, no callbacks: fit.py calls them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from snapid.metrics import classification_summary

StepHook = Callable[[int, int, int], None]  # (step, steps, images so far)


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * factor


def warmup_cosine(progress: float, total: float, warmup: float) -> float:
    """LR factor at ``progress`` epochs (fractional): linear warmup, then cosine to 1 % of the peak."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    span = max(total - warmup, 1e-9)
    t = min(max((progress - warmup) / span, 0.0), 1.0)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))


def train_head_epoch(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, *, optimizer, loss_fn,
                     batch_size: int, generator: torch.Generator, lr_at: Callable[[float], None]) -> float:
    """One pass over the cached features in a seeded random order; returns the mean loss."""
    head.train()
    order = torch.randperm(len(labels), generator=generator)
    total, steps = 0.0, max(1, math.ceil(len(labels) / batch_size))
    for k in range(steps):
        lr_at(k / steps)
        idx = order[k * batch_size:(k + 1) * batch_size]
        loss = loss_fn(head(features[idx].float()), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(labels)


def train_epoch(model: nn.Module, batches: Iterable, *, augment: nn.Module, optimizer, loss_fn, device: torch.device,
                steps: int, lr_at: Callable[[float], None], amp: bool = False, channels_last: bool = False,
                on_step: StepHook | None = None) -> tuple[float, int]:
    """One pass over image batches (uint8 from the cache), augmented on the device. Returns (mean loss, images)."""
    model.train()
    augment.train()
    total, seen = 0.0, 0
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    for k, (images, labels) in enumerate(batches):
        lr_at(k / max(steps, 1))
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.no_grad():
            x = augment(images)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(x), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss)} at step {k}: lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.detach()) * len(labels)
        seen += len(labels)
        if on_step:
            on_step(k + 1, steps, seen)
    return total / max(seen, 1), seen


@torch.no_grad()
def predict_features(head: nn.Module, features: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    head.eval()
    return torch.cat([head(features[i:i + batch_size].float()) for i in range(0, len(features), batch_size)]).numpy()


@torch.no_grad()
def predict_images(model: nn.Module, batches: Iterable, *, normalize: nn.Module, device: torch.device,
                   channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every batch (no augmentation)."""
    model.eval()
    logits, labels = [], []
    for images, y in batches:
        x = normalize(images.to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits.append(model(x).float().cpu())
        labels.append(y)
    if not logits:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def score(logits: np.ndarray, labels: np.ndarray, loss_fn) -> dict[str, float]:
    """val_loss, top1, top5, macro_f1 from logits."""
    if len(labels) == 0:
        return {"val_loss": float("nan"), "top1": float("nan"), "top5": float("nan"), "macro_f1": float("nan")}
    loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(labels)))
    return {"val_loss": loss, **classification_summary(logits, labels)}


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
