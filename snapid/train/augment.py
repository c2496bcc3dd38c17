"""Augmentation presets, run by kornia on the training device, on whole uint8 batches.

Built from the backbone spec (size, mean, std), so preprocessing cannot drift from serving:
normalisation is always the last step and the same one evaluation uses: `snapid.geometry`'s, which
serving looks up in a table.
"""

from __future__ import annotations

import torch
from torch import nn

from snapid import geometry


class Normalize(nn.Module):
    """uint8 or [0, 1] float N x 3 x H x W → standardised float, by `geometry.normalise_`."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        m, s = geometry.channel_stats(mean, std)
        self.register_buffer("mean", torch.from_numpy(m).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.from_numpy(s).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return geometry.normalise_(x.float(), self.mean, self.std)
        return geometry.standardise(x, self.mean, self.std)


class Augment(nn.Module):
    """Random ops on [0, 1] floats, then Normalize."""

    def __init__(self, ops: list[nn.Module], normalize: Normalize):
        super().__init__()
        self.ops = nn.Sequential(*ops)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        if len(self.ops) and self.training:
            x = self.ops(x)
        return self.normalize(x)


# --- the vocabulary: each operation with its parameter, and the presets as named lists of them ------------------
# name: (what its value means, default value, default probability)
OPERATIONS = {
    "hflip": ("probability of a left-right mirror", None, 0.5),
    "vflip": ("probability of an upside-down flip", None, 0.5),
    "rotate": ("largest rotation, degrees", 15.0, 0.5),
    "translate": ("largest shift, a fraction of the side", 0.1, 0.5),
    "scale": ("zoom range [low, high]", (0.9, 1.1), 0.5),
    "shear": ("largest shear, degrees", 10.0, 0.5),
    "crop": ("random resized crop, area range [low, high] (default: rrc_scale)", None, 1.0),
    "blur": ("Gaussian blur kernel side, odd pixels", 3, 0.5),
    "color_jitter": ("brightness, contrast and saturation change, a fraction", 0.2, 0.8),
    "grayscale": ("probability of a grey photo", None, 0.1),
    "erase": ("random erasing (cutout), area range [low, high]", (0.02, 0.2), 0.5),
}
AFFINE = ("rotate", "translate", "scale", "shear")  # consecutive ones run as one random affine transform
PRESET_OPS = {
    "none": [],
    "light": ["crop", "hflip"],
    "medium": [{"rotate": 10}, "crop", "hflip", {"color_jitter": 0.2, "p": 0.8}],
    # the product project's: rotation ±20°, shift ±30 %, shear ±30°, zoom 0.8-1.2, flip, colour, cutout
    "heavy": [{"rotate": 20, "p": 0.9}, {"translate": 0.3, "p": 0.9}, {"shear": 30, "p": 0.9},
              {"scale": [0.8, 1.2], "p": 0.9}, "crop", "hflip", {"color_jitter": 0.3, "p": 0.8},
              {"erase": [0.02, 0.2], "p": 0.5}],
}


def parse_augment(spec) -> list[dict]:
    """A preset name, or a list of operations (a name, or {name: value} with an optional p), as
    [{"op", "value", "p"}]; ValueError names the entry at fault."""
    if isinstance(spec, str):
        if spec not in PRESET_OPS:
            raise ValueError(f"{spec!r} is neither a preset ({', '.join(PRESET_OPS)}) nor a list of operations "
                             f"({', '.join(OPERATIONS)})")
        spec = PRESET_OPS[spec]
    if not isinstance(spec, (list, tuple)):
        raise ValueError("give a preset name or a list of operations, e.g. [hflip, {rotate: 20}, {blur: 3}]")
    return [_operation(i + 1, entry) for i, entry in enumerate(spec)]


def augment_from_flag(text: str):
    """`--augment`: a preset name, or operations separated by commas, each NAME or NAME=VALUE, a range as
    LOW:HIGH, e.g. "hflip,vflip,rotate=20,scale=0.8:1.2,blur=3"."""
    text = text.strip()
    if text in PRESET_OPS:
        return text
    entries = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not value:
            entries.append(name.strip())
            continue
        numbers = [float(v) if "." in v or "e" in v.lower() else int(v) for v in value.split(":")] \
            if all(_is_number(v) for v in value.split(":")) else [value]
        entries.append({name.strip(): numbers if len(numbers) > 1 else numbers[0]})
    return entries


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _operation(n: int, entry) -> dict:
    where = f"entry {n} ({entry!r})"
    if isinstance(entry, str):
        name, value, p = entry, None, None
    elif isinstance(entry, dict) and entry:
        names = [k for k in entry if k != "p"]
        if len(names) != 1 or set(entry) - {names[0], "p"}:
            raise ValueError(f"{where}: one operation per entry, optionally with p, e.g. {{rotate: 20, p: 0.5}}")
        name, value, p = names[0], entry[names[0]], entry.get("p")
    else:
        raise ValueError(f"{where}: an operation name or {{name: value}}")
    if name not in OPERATIONS:
        raise ValueError(f"{where}: unknown operation {name!r}; known: {', '.join(OPERATIONS)}")
    meaning, default, default_p = OPERATIONS[name]
    if default is None and value is not None and name not in ("crop",):
        p, value = value, None  # hflip: 0.3 reads as a probability
    value = default if value is None else value
    p = default_p if p is None else p
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"{where}: p must be a probability in [0, 1]")
    return {"op": name, "value": _checked(where, name, meaning, value), "p": float(p)}


def _checked(where: str, name: str, meaning: str, value):
    bad = ValueError(f"{where}: {name} takes {meaning}, got {value!r}")
    if value is None:
        return None
    if name in ("scale", "crop", "erase"):
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value)):
            raise bad
        low, high = float(value[0]), float(value[1])
        if not 0 < low <= high or (name != "scale" and high > 1):
            raise bad
        return [low, high]
    if not _number(value) or value < 0:
        raise bad
    if name == "blur":
        if int(value) != value or int(value) < 3 or int(value) % 2 == 0:
            raise bad
        return int(value)
    if name in ("translate", "color_jitter") and value > 1:
        raise bad
    return float(value)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def build_augment(spec, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  rrc_scale: tuple[float, float] = (0.6, 1.0)) -> Augment:
    """Kornia modules for a preset ('none', 'light', 'medium', 'heavy') or a list of operations, in order."""
    try:
        operations = parse_augment(spec)
    except ValueError as exc:
        from snapid.errors import SnapidError

        raise SnapidError(f"augment: {exc}", code="bad_config") from None
    ops: list[nn.Module] = []
    affine: list[dict] = []
    for operation in operations + [{"op": None}]:
        if operation["op"] in AFFINE:
            affine.append(operation)
            continue
        if affine:
            ops.append(_affine(affine))
            affine = []
        if operation["op"] is not None:
            ops.append(_module(operation, size, tuple(rrc_scale)))
    return Augment(ops, Normalize(mean, std))


def _affine(operations: list[dict]) -> nn.Module:
    import kornia.augmentation as K

    values = {o["op"]: o["value"] for o in operations}
    translate = values.get("translate")
    return K.RandomAffine(degrees=values.get("rotate", 0.0), translate=(translate, translate) if translate else None,
                          scale=tuple(values["scale"]) if "scale" in values else None, shear=values.get("shear"),
                          p=max(o["p"] for o in operations))


def _module(operation: dict, size: int, rrc_scale: tuple[float, float]) -> nn.Module:
    import kornia.augmentation as K

    name, value, p = operation["op"], operation["value"], operation["p"]
    if name == "hflip":
        return K.RandomHorizontalFlip(p=p)
    if name == "vflip":
        return K.RandomVerticalFlip(p=p)
    if name == "crop":
        return K.RandomResizedCrop((size, size), scale=tuple(value or rrc_scale), ratio=(3 / 4, 4 / 3), p=p)
    if name == "blur":
        return K.RandomGaussianBlur((value, value), sigma=(0.1, 2.0), p=p)
    if name == "color_jitter":
        return K.ColorJitter(brightness=value, contrast=value, saturation=value, p=p)
    if name == "grayscale":
        return K.RandomGrayscale(p=p)
    return K.RandomErasing(scale=tuple(value), p=p)  # erase
