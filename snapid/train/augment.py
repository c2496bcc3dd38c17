"""Augmentation presets, run by kornia on the training device, on whole uint8 batches.

Built from the backbone spec (size, mean, std), so preprocessing cannot drift from serving:
normalisation is always the last step and the same one evaluation uses.
"""

from __future__ import annotations

import torch
from torch import nn

PRESETS = ("none", "light", "medium", "heavy")


class Normalize(nn.Module):
    """uint8 or [0, 1] float N x 3 x H x W → standardised float."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # one new tensor, then in place: cheaper than three temporaries
            return x.float().mul_(1.0 / 255.0).sub_(self.mean).div_(self.std)
        return (x - self.mean) / self.std


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


def build_augment(preset: str, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  rrc_scale: tuple[float, float] = (0.6, 1.0)) -> Augment:
    """'none', 'light' (crop + flip), 'medium' (+ colour, small rotation), 'heavy' (the product project's)."""
    import kornia.augmentation as K

    if preset not in PRESETS:
        from snapid.errors import SnapidError

        raise SnapidError(f"augment {preset!r}: expected one of {', '.join(PRESETS)}", code="bad_config")
    crop = K.RandomResizedCrop((size, size), scale=rrc_scale, ratio=(3 / 4, 4 / 3))
    flip = K.RandomHorizontalFlip()
    ops: list[nn.Module] = []
    if preset == "light":
        ops = [crop, flip]
    elif preset == "medium":
        ops = [K.RandomAffine(degrees=10.0, p=0.5), crop, flip,
               K.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, p=0.8)]
    elif preset == "heavy":
        # rotation ±20°, shift ±30 %, shear ±30°, zoom 0.8-1.2, flip, cutout
        ops = [K.RandomAffine(degrees=20.0, translate=(0.3, 0.3), shear=30.0, scale=(0.8, 1.2), p=0.9), crop, flip,
               K.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, p=0.8),
               K.RandomErasing(scale=(0.02, 0.2), p=0.5)]
    return Augment(ops, Normalize(mean, std))
