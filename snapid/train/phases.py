"""The two training phases. Each epoch starts by reseeding from (seed, epoch): a resumed run
replays the same random numbers as an uninterrupted one."""

from __future__ import annotations

import copy
import random
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, WeightedRandomSampler

from snapid.data.cached_dataset import make_loader
from snapid.train import distributed as dist_util
from snapid.train import lbfgs
from snapid.train.features import extract, feature_cache, frozen_backbone, view_transform
from snapid.train.loop import (
    Timer,
    predict_features,
    predict_images,
    score,
    set_lr,
    train_epoch,
    train_head_epoch,
    warmup_cosine,
)
from snapid.train.setup import class_weights, make_optimizer, param_groups, sample_weights

HEAD_BATCH = 256  # the head is tiny: large batches on cached features
PROBE_SAVE_EVERY_S = 5.0  # a killed probe loses at most this much head training (its features are recomputed anyway)


def seed_everything(seed: int, epoch: int) -> None:
    mixed = (seed * 1_000_003 + epoch) % (2**31)
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)


def _shard(n: int, info: dist_util.Dist) -> np.ndarray | None:
    return np.arange(info.rank, n, info.world) if info.enabled else None


def probe_phase(state, model, *, train, val, augment, normalize, train_loss, val_loss, resume_state) -> None:
    """Frozen backbone: features once (a few augmented views), then many cheap head epochs."""
    cfg, info, device, rep = state.config, state.info, state.device, state.reporter
    net = model.module if hasattr(model, "module") else model
    net.freeze_backbone()
    net.to(memory_format=torch.channels_last)  # about 2x faster frozen-backbone inference on a CPU, measured
    total = len(train) * cfg.probe_views + len(val)
    rep.phase("probe: computing backbone features once", total)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        rep.progress(done[0], total)

    seed_everything(cfg.seed, -1)
    backbone = frozen_backbone(net)
    if info.enabled:  # each rank embeds a slice; every rank then holds all features, in the same order
        parts = [extract(backbone, train, transform=view_transform(v, normalize=normalize, augment=augment),
                         device=device, batch_size=cfg.batch_size,
                         seed=cfg.seed * 1000 + v, indices=_shard(len(train), info), channels_last=True, on_batch=tick,
                         note=rep.note)
                 for v in range(cfg.probe_views)]
        feats = dist_util.gather_cat(info, torch.cat([p[0] for p in parts]))
        labels = dist_util.gather_cat(info, torch.cat([p[1] for p in parts]))
    else:
        feats, labels = feature_cache(backbone, train, augment=augment, normalize=normalize, views=cfg.probe_views,
                                      device=device, batch_size=cfg.batch_size, seed=cfg.seed, channels_last=True,
                                      on_batch=tick, note=rep.note)
    val_feats, val_labels = extract(backbone, val, transform=normalize, device=device, batch_size=cfg.batch_size,
                                    seed=cfg.seed, channels_last=True, on_batch=tick, note=rep.note)
    head = net.head.cpu()  # features live on the CPU; the head is small
    loss_fn = copy.deepcopy(train_loss).cpu()  # a copy: fine-tuning keeps the original on the device
    if state.meta["imbalance"] == "sampler":  # no sampler over features: weight the loss instead
        weights, _ = class_weights(train.class_counts(), "inverse")
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    fit = _lbfgs_probe if probe_solver(cfg) == "lbfgs" else _adamw_probe
    fit(state, net, head, feats, labels, val_feats, val_labels, loss_fn=loss_fn, val_loss=val_loss,
        resume_state=resume_state, num_classes=len(train.classes))
    if info.main:
        state.save()
    net.to(device)
    state.progress["phase_done"] = True


def probe_solver(cfg) -> str:
    """"auto": L-BFGS for a linear head (a convex fit, solved outright), AdamW epochs for an MLP head."""
    if cfg.probe_solver != "auto":
        return cfg.probe_solver
    return "lbfgs" if cfg.head == "linear" else "adamw"


def _lbfgs_probe(state, net, head, feats, labels, val_feats, val_labels, *, loss_fn, val_loss, resume_state,
                 num_classes) -> None:
    """One L-BFGS fit per weight decay of the grid, each recorded as a probe epoch; the best by the monitored
    validation metric is the run's best checkpoint."""
    cfg, info, rep = state.config, state.info, state.reporter
    linear = lbfgs.linear_layer(head)
    stats = lbfgs.standardiser(feats)
    y = labels.long()
    start = state.progress["phase_start"]
    grid = lbfgs.WEIGHT_DECAYS
    rep.phase("probe: fitting the head (L-BFGS, one fit per weight decay)", len(grid))
    for epoch in range(state.progress["next_epoch"], start + len(grid)):
        k = epoch - start
        seed_everything(cfg.seed, epoch)
        timer = Timer()
        weight, bias, loss = lbfgs.fit_linear(feats, y, num_classes, weight_decay=grid[k], loss_fn=loss_fn, stats=stats)
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        metrics = {"train_loss": loss, **score(predict_features(head, val_feats), val_labels.numpy(), val_loss.cpu()),
                   "lr": grid[k], "seconds": timer.seconds, "images_per_s": len(labels) / max(timer.seconds, 1e-9)}
        state.end_epoch(net, epoch, "probe", metrics, {"weight_decay": grid[k]}, save_every_s=PROBE_SAVE_EVERY_S)
        rep.progress(k + 1, len(grid))
    dist_util.barrier(info)


def _adamw_probe(state, net, head, feats, labels, val_feats, val_labels, *, loss_fn, val_loss, resume_state,
                 num_classes) -> None:
    """Epochs of AdamW over the cached features (MLP heads, or probe_solver: adamw), with early stopping."""
    cfg, info, rep = state.config, state.info, state.reporter
    optimizer = make_optimizer(head.parameters(), cfg, lr=cfg.probe_lr)
    if resume_state and resume_state["progress"]["phase"] == "probe":
        optimizer.load_state_dict(resume_state["optimizer"])
    start = state.progress["phase_start"]
    rep.phase("probe: training the head", cfg.probe_epochs)
    for epoch in range(state.progress["next_epoch"], start + cfg.probe_epochs):
        k = epoch - start
        seed_everything(cfg.seed, epoch)
        timer = Timer()
        loss = train_head_epoch(head, feats, labels, optimizer=optimizer, loss_fn=loss_fn, batch_size=HEAD_BATCH,
                                generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch),
                                lr_at=lambda f, k=k: set_lr(optimizer, [cfg.probe_lr],
                                                            warmup_cosine(k + f, cfg.probe_epochs, 0.0)))
        metrics = {"train_loss": loss, **score(predict_features(head, val_feats), val_labels.numpy(), val_loss.cpu()),
                   "lr": optimizer.param_groups[0]["lr"], "seconds": timer.seconds,
                   "images_per_s": len(labels) / max(timer.seconds, 1e-9)}
        stop = dist_util.broadcast(info, state.end_epoch(net, epoch, "probe", metrics, optimizer.state_dict(),
                                                         save_every_s=PROBE_SAVE_EVERY_S))
        rep.progress(k + 1, cfg.probe_epochs)
        if stop:
            break


def _train_loader(train, batch: int, epoch: int, cfg, info, balanced: bool):
    if info.enabled:
        sampler = DistributedSampler(train, num_replicas=info.world, rank=info.rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    elif balanced:
        weights = sample_weights(train.labels, train.class_counts())
        sampler = WeightedRandomSampler(weights, len(train), generator=torch.Generator().manual_seed(cfg.seed + epoch))
    else:
        sampler = None
    per_rank = len(sampler) if sampler is not None else len(train)
    # a last batch of one image breaks BatchNorm in training mode: drop it (it is a different one each epoch)
    return make_loader(train, batch, shuffle=True, seed=cfg.seed * 7919 + epoch, sampler=sampler, workers=cfg.workers,
                       drop_last=per_rank > batch and per_rank % batch == 1)


def finetune_phase(state, model, *, train, val, augment, normalize, train_loss, val_loss, resume_state) -> None:
    """Top groups unfrozen, discriminative learning rates, warmup then cosine; halves the batch on OOM."""
    cfg, info, device, rep = state.config, state.info, state.device, state.reporter
    net = model.module if hasattr(model, "module") else model
    net.freeze_backbone()
    net.unfreeze(cfg.unfreeze or None)
    groups = param_groups(net, cfg.unfreeze, cfg.lr, cfg.lr_decay)
    base_lrs = [g["lr"] for g in groups]
    optimizer = make_optimizer(groups, cfg)
    batch = cfg.batch_size
    if resume_state and resume_state["progress"]["phase"] == "finetune":
        optimizer.load_state_dict(resume_state["optimizer"])
        batch = int(resume_state.get("batch_size", batch))
    cuda = device.type == "cuda"
    net.to(memory_format=torch.channels_last)  # faster on CUDA and, measured, on the CPU too (oneDNN)
    trainer = DistributedDataParallel(net, device_ids=[device.index] if cuda else None) if info.enabled else net
    start, epochs = state.progress["phase_start"], cfg.finetune_epochs
    balanced = state.meta["imbalance"] == "sampler"
    last_seconds = 0.0
    for epoch in range(state.progress["next_epoch"], start + epochs):
        k = epoch - start
        spent = state.deadline is not None and time.monotonic() + last_seconds > state.deadline
        if dist_util.broadcast(info, spent):  # every rank stops at the same epoch
            rep.note(f"the time budget ({cfg.budget}) is spent: fine-tuning stops after {k} of {epochs} epochs")
            break
        timer = Timer()
        while True:
            seed_everything(cfg.seed, epoch)
            loader = _train_loader(train, batch, epoch, cfg, info, balanced)
            rep.phase(f"fine-tune epoch {k + 1}/{epochs}", len(loader))
            try:
                loss, seen = train_epoch(
                    trainer, loader, augment=augment, optimizer=optimizer, loss_fn=train_loss, device=device,
                    steps=len(loader), amp=cuda, channels_last=True,
                    lr_at=lambda f, k=k: set_lr(optimizer, base_lrs, warmup_cosine(k + f, epochs, cfg.warmup_epochs)),
                    on_step=lambda i, n, images, timer=timer: rep.progress(i, n, images / max(timer.seconds, 1e-9)))
                break
            except torch.cuda.OutOfMemoryError:
                if batch <= 1:
                    raise
                batch //= 2
                optimizer.zero_grad(set_to_none=True)
                if cuda:
                    torch.cuda.empty_cache()
                rep.note(f"out of GPU memory: batch size halved to {batch}, epoch {k + 1} restarted")
        seconds = timer.seconds
        logits, labels = predict_images(net, make_loader(val, max(batch, 64), shuffle=False), normalize=normalize,
                                        device=device, channels_last=True)
        metrics = {"train_loss": loss, **score(logits, labels, val_loss.cpu()),
                   "lr": max(g["lr"] for g in optimizer.param_groups), "seconds": seconds,
                   "images_per_s": seen * info.world / max(seconds, 1e-9)}
        stop = dist_util.broadcast(info, state.end_epoch(net, epoch, "finetune", metrics, optimizer.state_dict(),
                                                         {"batch_size": batch}))
        last_seconds = timer.seconds
        state.finetune_epochs_run = k + 1
        if stop:
            break
    state.progress["phase_done"] = True
