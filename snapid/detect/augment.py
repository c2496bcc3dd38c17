"""Box-aware augmentation for detector training: torchvision.transforms.v2 on tv_tensors.

Horizontal flip, scale/translate jitter (RandomAffine keeps the S x S frame, so the model's
transform never resizes), colour jitter; boxes move with the pixels and boxes pushed mostly out of
the frame are dropped (SanitizeBoundingBoxes). No vertical flip: photos have an up.
Runs on the uint8 picture in the DataLoader worker, before the conversion to float.
"""

from __future__ import annotations

import torch

PRESETS = ("none", "light", "medium")


def build_detect_augment(preset: str = "light"):
    """A callable (image uint8 3xSxS, boxes Nx4, labels N) -> (image, boxes, labels), or None for "none"."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation {preset!r} (expected one of {', '.join(PRESETS)})")
    if preset == "none":
        return None
    scale = (0.8, 1.2) if preset == "light" else (0.6, 1.4)
    transform = v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=scale),
        v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=2.0),
    ])

    def apply(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor):
        size = tuple(image.shape[-2:])
        wrapped = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size)
        out = transform({"image": tv_tensors.Image(image), "boxes": wrapped, "labels": labels})
        return out["image"].as_subclass(torch.Tensor), out["boxes"].as_subclass(torch.Tensor), out["labels"]

    return apply
