"""Every training option, documented in one line each; from `--config run.yaml` plus CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from snapid.errors import SnapidError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # model
    model: str = Field("auto", description="Backbone from `snapid weights list`, timm/<name>, or two joined by + "
                       "(features fused); auto = the most accurate one the time budget affords (docs/training.md).")
    budget: str | None = Field("10m", description="Wall time for the run, e.g. 10m or 1h: the recipe is planned to fit "
                               "it on this machine (measured first); None: no limit.")
    pretrained: bool = Field(True, description="Start from ImageNet weights (False: train from scratch).")
    weights: Path | None = Field(None, description="Local weights file (.safetensors or .pth state_dict).")
    head: Literal["linear", "mlp"] = Field("linear", description="Classifier head: linear, or an MLP with dropout.")
    head_dims: tuple[int, ...] = Field((512, 256, 128, 64), description="Hidden sizes of the MLP head.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before each head layer.")
    # data
    size: int | None = Field(None, ge=32, le=1024, description="Input side in pixels (default: the backbone's).")
    crop: Literal["auto", "none", "boxes"] = Field(
        "auto", description="Train on box crops: auto = when most photos have boxes.")
    pad: float = Field(0.1, ge=0, le=2, description="Box crop padding, a fraction of the box's longer side.")
    resize: Literal["crop", "letterbox"] = Field("crop", description="Fit photos by centre crop or letterbox.")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per step (halved on GPU out-of-memory: fine-tuning "
                            "restarts its epoch, features and evaluation go on from the same image).")
    augment: str | list = Field("medium", description="Augmentation (kornia, on the device): a preset (none, light, "
                                                      "medium, heavy) or a list of operations, e.g. [hflip, vflip, "
                                                      "{rotate: 20}, {blur: 3}] (docs/training.md).")
    rrc_scale: tuple[float, float] = Field((0.6, 1.0),
                                           description="RandomResizedCrop area range; (0.08, 1) cuts objects apart.")
    imbalance: Literal["auto", "none", "inverse", "effective", "sampler"] = Field(
        "auto", description="Class imbalance: weighted loss (inverse / effective number), balanced sampler; auto = "
                            "effective when max/min > 5.")
    # phase 1: probe (frozen backbone, features computed once)
    probe_epochs: int = Field(30, ge=0, description="Head-only epochs on cached features (0 skips the phase).")
    probe_views: int | None = Field(None, ge=1, le=32, description="Views per training image in the feature cache: 1 "
                                    "clean, 2 adds its mirror image, more add augmented views; default: planned (2 "
                                    "when it fits).")
    probe_solver: Literal["auto", "lbfgs", "adamw"] = Field(
        "auto", description="Head fit: lbfgs (to convergence, weight decay chosen on val), adamw (epochs); auto = "
                            "lbfgs for a linear head.")
    probe_lr: float = Field(3e-3, gt=0, description="Learning rate of the head in the probe phase.")
    # phase 2: fine-tune
    finetune_epochs: int | None = Field(None, ge=0, description="Epochs with the top of the backbone unfrozen (0 skips "
                                                                "the phase; default: 5 on a GPU, 0 on a CPU).")
    unfreeze: int = Field(2, ge=0, description="Backbone groups to unfreeze from the top (0 = all).")
    lr: float = Field(3e-4, gt=0, description="Fine-tune learning rate of the head and the top group.")
    lr_decay: float = Field(0.3, gt=0, le=1,
                            description="Each group toward the stem gets this times the next one's rate.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warmup before the cosine decay.")
    optimizer: Literal["adamw", "sgd", "rmsprop"] = Field(
        "adamw", description="Optimiser of fine-tuning and AdamW-style probe epochs: adamw, sgd (with momentum) or "
                             "rmsprop (momentum, alpha).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of sgd and rmsprop.")
    alpha: float = Field(0.9, gt=0, lt=1,
                         description="rmsprop: smoothing of the squared-gradient average (Keras' rho).")
    weight_decay: float = Field(0.01, ge=0,
                                description="Weight decay: decoupled for adamw, an L2 term for sgd and rmsprop.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Cross-entropy label smoothing.")
    # models without pretrained weights (custom_cnn, or pretrained: false) in `snapid compare`
    scratch_epochs: int = Field(
        30, ge=1, description="snapid compare: epochs of a model trained from scratch (all layers, no probe).")
    scratch_lr: float = Field(1e-3, gt=0, description="snapid compare: learning rate of a model trained from scratch.")
    # control
    patience: int = Field(5, ge=1, description="Stop a phase after this many epochs without improvement.")
    monitor: Literal["val_top1", "val_loss", "val_macro_f1"] = Field(
        "val_loss", description="Metric for early stopping and the best checkpoint (val_loss is steadier on small "
                                "validation sets).")
    seed: int = Field(0, description="Seed: the same seed on a CPU gives the same weights.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    workers: int = Field(0, ge=0, le=64,
                         description="DataLoader worker processes (0: read in the main process; the cache is fast).")

    @field_validator("budget", mode="before")
    @classmethod
    def _duration_or_none(cls, value):
        """"none", "off" or 0 mean no limit; anything else must read as a duration (checked before any work)."""
        if value is None or str(value).strip().lower() in ("none", "off", "0", ""):
            return None
        from snapid.errors import SnapidError
        from snapid.train.budget import parse_budget

        try:
            parse_budget(str(value))
        except SnapidError as exc:
            raise ValueError(exc.message) from None
        return str(value)

    @field_validator("augment", mode="before")
    @classmethod
    def _known_augmentation(cls, value):
        from snapid.train.augment import parse_augment

        parse_augment(value)  # ValueError names the entry at fault
        return list(value) if isinstance(value, tuple) else value

    @classmethod
    def load(cls, path: Path | None, overrides: dict) -> TrainConfig:
        """A YAML file (optional) with CLI overrides on top; errors name the file and the key."""
        data: dict = {}
        if path is not None:
            try:
                data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise SnapidError(f"{path}: cannot read the config ({exc})", code="bad_config") from None
            if not isinstance(data, dict):
                raise SnapidError(f"{path}: the config must be a mapping of option: value", code="bad_config")
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValidationError as exc:
            where = f"{path}: " if path else ""
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise SnapidError(f"{where}option {key!r}: {message}", code="bad_config") from None

    def public(self) -> dict:
        return self.model_dump(mode="json")
