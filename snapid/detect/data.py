"""A torch Dataset of letterboxed photos and their boxes, from a dataset manifest.

Each photo is decoded once (snapid.images: EXIF applied, alpha on white), letterboxed to S x S
(snapid.geometry) and kept in memory as uint8 while the split fits in ``memory_cap`` (1 GiB ≈ 3,400
photos at 320 px); a detector epoch on a CPU costs far more than this decode, so no disk cache is
kept and no cache can go stale. Larger splits decode lazily each epoch. Photos that fail to decode
are skipped and counted; more than 1 % fails the split (files changed since import).

Only photos with at least one box are used: a photo without boxes is "not annotated", not
"nothing here". Labels are 1..K (0 is background); class-agnostic training gives every box label 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from snapid import geometry, images
from snapid.data.manifest import Manifest, Sample
from snapid.detect.geometry import letterbox_geometry, to_letterbox
from snapid.errors import DatasetError, ImageError, SnapidError

AGNOSTIC = "object"
MEMORY_CAP = 1 << 30
MAX_FAILED = 0.01


def detection_classes(manifest: Manifest, class_agnostic: bool) -> list[str]:
    """The detector's class ids in label order (label k+1 is classes[k])."""
    if class_agnostic:
        return [AGNOSTIC]
    used = {b.label or s.label for s in manifest.samples for b in s.boxes} - {None}
    return [c.id for c in manifest.classes if c.id in used]


def letterbox_picture(picture: Image.Image, w: int, h: int, size: int) -> np.ndarray:
    """The S x S x 3 uint8 letterbox of a photo imported as w x h (``picture`` may be a smaller
    draft decode of it): the same canvas as ``geometry.letterbox`` of the full-size photo."""
    return np.asarray(geometry.letterbox(picture, size, original=(w, h)), dtype=np.uint8)


def load_letterboxed(root: Path, sample: Sample, size: int, limits: images.DecodeLimits) -> np.ndarray:
    f = sample.facts
    draft = geometry.decode_size(f.width, f.height, None, size, "letterbox")
    picture = images.decode_file(root / sample.path, limits=limits, min_size=draft)
    if abs(picture.size[0] / f.width - picture.size[1] / f.height) > 0.02:
        raise ImageError(f"{root / sample.path}: the file changed since import "
                                f"({picture.size[0]}x{picture.size[1]}, imported as {f.width}x{f.height})")
    return letterbox_picture(picture, f.width, f.height, size)


@dataclass
class DetectionDataset(torch.utils.data.Dataset):
    root: Path
    samples: list[Sample]
    size: int
    classes: list[str]
    augment: object = None            # build_detect_augment(...) or None
    limits: images.DecodeLimits = images.DEFAULT_LIMITS
    failed: dict[str, str] = field(default_factory=dict)
    _cache: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        self._index = {c: i + 1 for i, c in enumerate(self.classes)}
        self._agnostic = self.classes == [AGNOSTIC]
        if len(self.samples) * self.size * self.size * 3 <= MEMORY_CAP:
            self._preload()

    def _preload(self) -> None:
        kept, cache = [], []
        for s in self.samples:
            try:
                cache.append(load_letterboxed(self.root, s, self.size, self.limits))
                kept.append(s)
            except SnapidError as exc:
                self.failed[s.path] = exc.message
        if self.samples and len(self.failed) > MAX_FAILED * len(self.samples):
            first = next(iter(self.failed.items()))
            raise DatasetError(f"{len(self.failed)} of {len(self.samples)} photos under {self.root} could not be "
                               f"decoded (first: {first[0]}: {first[1]}); import the dataset again")
        self.samples, self._cache = kept, cache

    def __len__(self) -> int:
        return len(self.samples)

    def picture(self, i: int) -> np.ndarray:
        """The letterboxed S x S x 3 uint8 photo ``i`` (no augmentation)."""
        if self._cache is not None:
            return self._cache[i]
        return load_letterboxed(self.root, self.samples[i], self.size, self.limits)

    def geometry(self, i: int) -> tuple[float, float, float]:
        f = self.samples[i].facts
        return letterbox_geometry(f.width, f.height, self.size)

    def target(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes N x 4 in the S x S frame, labels N) of photo ``i``; boxes under 1 px are dropped."""
        s = self.samples[i]
        pairs = [(b, 1 if self._agnostic else self._index.get(b.label or s.label)) for b in s.boxes]
        pairs = [(b, k) for b, k in pairs if k is not None]
        boxes = to_letterbox([[b.x1, b.y1, b.x2, b.y2] for b, _ in pairs], *self.geometry(i))
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        labels = np.array([k for _, k in pairs], dtype=np.int64).reshape(-1)[keep]
        return torch.as_tensor(boxes[keep], dtype=torch.float32), torch.as_tensor(labels)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.ascontiguousarray(self.picture(i).transpose(2, 0, 1)))
        boxes, labels = self.target(i)
        if self.augment is not None:
            image, boxes, labels = self.augment(image, boxes, labels)
        return image.float().div_(255), {"boxes": boxes.float().reshape(-1, 4), "labels": labels.long()}


def detection_split(manifest: Manifest, split: str, *, size: int, classes: list[str], augment=None,
                    limits: images.DecodeLimits = images.DEFAULT_LIMITS) -> DetectionDataset:
    """The photos of one split that have boxes."""
    samples = [s for s in manifest.samples if s.split == split and s.boxes]
    return DetectionDataset(Path(manifest.root), samples, size, classes, augment, limits)


def collate(batch):
    """Detection models take lists: images and targets stay unstacked."""
    return [item[0] for item in batch], [item[1] for item in batch]
