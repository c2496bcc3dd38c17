"""Uploaded bytes → one normalised float32 3 x S x S array, exactly as training items were made.

`snapid.data.cache.render_item` prepared every training item by the rules of `snapid.geometry`: decode
with the JPEG draft fast path at `geometry.decode_size`, then `geometry.fit` (short side + centre crop,
or letterbox) to S x S uint8; training normalised with `geometry.normalise_`. This module calls the same
functions, so there is no train/serve skew. Photos uploaded for serving have no boxes, so a `crop_boxes`
model gets the whole photo (a detector bundle would crop first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snapid import geometry, images
from snapid.errors import SnapidError


@dataclass(frozen=True)
class PreprocessSpec:
    size: int
    resize: str                    # "crop" or "letterbox"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_bundle(cls, preprocess: dict) -> PreprocessSpec:
        """Validated from a bundle's preprocess.json; a bad value names itself."""
        try:
            size = int(preprocess["size"])
            resize = str(preprocess.get("resize", "crop"))
            mean = tuple(float(v) for v in preprocess["mean"])
            std = tuple(float(v) for v in preprocess["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapidError(f"preprocess.json: missing or invalid value ({exc})", code="bad_bundle",
                              status=422) from None
        if not 16 <= size <= 1024 or resize not in geometry.RESIZE_MODES or len(mean) != 3 or len(std) != 3 \
                or min(std) <= 0:
            raise SnapidError(f"preprocess.json: size {size}, resize {resize!r}, mean {mean}, std {std} are not usable",
                              code="bad_bundle", status=422)
        return cls(size=size, resize=resize, mean=mean, std=std)  # type: ignore[arg-type]


def decode_for_model(data: bytes, spec: PreprocessSpec, limits: images.DecodeLimits, name: str = "photo") -> np.ndarray:
    """S x S x 3 uint8, the same way `render_item` made training items (whole photo, no box)."""
    return images.decode_fitted(data, spec.size, spec.resize, limits=limits, name=name)


def normalise(items: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """N x S x S x 3 (or S x S x 3) uint8 → N x 3 x S x S float32: `geometry.normalise` with the bundle's
    mean and std, bit for bit what training's normalisation gave."""
    return geometry.normalise(items, spec.mean, spec.std)


def prepare_photo(data: bytes, spec: PreprocessSpec, limits: images.DecodeLimits, name: str = "photo") -> np.ndarray:
    """Bytes → 3 x S x S float32, ready for the model's "images" input."""
    return normalise(decode_for_model(data, spec, limits, name), spec)[0]
