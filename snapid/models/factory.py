"""Build a classifier from a name or a checkpoint's config: the one place that joins the registry, the head
and pretrained weights (timm's ``create_model``). Sits on top of snapid.models, so nothing below imports it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from snapid.models.classifier import Classifier
from snapid.models.heads import make_head
from snapid.models.registry import builder_for, get_spec
from snapid.models.weights import load_pretrained


def create(name: str, num_classes: int, *, pretrained: bool = True, weights_path: Path | None = None,
           head: str = "linear", head_dims: tuple[int, ...] = (512, 256, 128, 64), dropout: float = 0.2) -> Classifier:
    """Build a classifier; pretrained weights from ``weights_path``, else the hub cache / offline package / hub.

    Raises SnapidError: unknown_model, bad_config, bad_weights, weights_unavailable.
    """
    spec = get_spec(name)
    backbone, dim, group_modules = builder_for(spec)(pretrained if spec.family == "custom" else False)
    model = Classifier(spec, backbone, dim, group_modules, make_head(head, dim, num_classes, head_dims, dropout),
                       num_classes=num_classes, head_kind=head, head_dims=tuple(head_dims), dropout=dropout)
    if weights_path is not None or (pretrained and spec.default_weights and spec.family != "custom"):
        load_pretrained(model, weights_path=weights_path)
    return model


def from_config(config: dict) -> Classifier:
    """The architecture a checkpoint's ``Classifier.config()`` describes, without pretrained weights."""
    return create(config["model"], int(config["num_classes"]), pretrained=False, head=config["head"],
                  head_dims=tuple(config["head_dims"]), dropout=float(config["dropout"]))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
