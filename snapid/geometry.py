"""The one geometry and normalisation every stage uses: prepare, training, evaluation, export and serving.

A model input is made from a photo in four steps, each defined here once:
- **decode size** (`decode_size`): the smallest upright size to decode a photo at so the region the model
  sees still covers the target (a JPEG is then decoded at the smallest DCT draft scale that reaches it);
- **region** (`padded_box`, `crop_rect`): a box grown by ``pad`` x its longer side, kept inside the photo,
  cut at whole pixels of the (maybe draft-scaled) decode;
- **fit** (`fit`: `short_side_crop` or `letterbox`): the region to S x S uint8;
- **normalisation** (`normalise_`, `normalise`): (x / 255 - mean) / std per channel, in float32, as
  x * float32(1 / 255) - mean, then / std. The torch modules of training and evaluation run
  `normalise_` on their tensors; serving looks the 256 possible values of each channel up in a table
  that `normalise_` computed, so both give the same bits.

`cut_and_fit` is the prepare-side composition (region then fit) that both `snapid data prepare` and
serving's detect → crop stage call, so a served crop equals the prepared cache item of the same box.

NumPy and Pillow only: the server imports this module, and it imports nothing from snapid but errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from snapid.errors import ImageError

RESIZE_MODES = ("crop", "letterbox")   # "crop": short side then centre crop; "letterbox": pad to a square
UNIT_SCALE = np.float32(1.0 / 255.0)   # uint8 → [0, 1], as a multiplication in float32
DRAFT_TOLERANCE = 0.02                 # how far apart a draft decode's two scales may be (rounding of odd sides)

Region = tuple[float, float, float, float]  # x1, y1, x2, y2 in upright pixels of the original photo


# --- regions and decode sizes --------------------------------------------------------------------------
def padded_box(box: Sequence[float], pad: float, width: int, height: int) -> Region:
    """The box (x1, y1, x2, y2) grown by ``pad`` x its longer side on every side, kept inside the
    width x height photo."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    grow = pad * max(x2 - x1, y2 - y1)
    return max(0.0, x1 - grow), max(0.0, y1 - grow), min(float(width), x2 + grow), min(float(height), y2 + grow)


def decode_size(width: int, height: int, box: Region | None, size: int, resize: str) -> tuple[int, int]:
    """The smallest upright size to decode a width x height photo at so ``box`` (or the whole photo)
    still covers the S x S target of ``resize``; never larger than the photo."""
    region_w = width if box is None else max(1.0, box[2] - box[0])
    region_h = height if box is None else max(1.0, box[3] - box[1])
    needed = min(region_w, region_h) if resize == "crop" else max(region_w, region_h)
    scale = min(1.0, size / needed)
    return max(1, int(width * scale)), max(1, int(height * scale))


def crop_rect(region: Region, sx: float = 1.0, sy: float = 1.0) -> tuple[int, int, int, int]:
    """The whole-pixel crop (left, top, right, bottom) of ``region`` (original pixels) in a decode scaled
    by sx, sy: at least one pixel each way."""
    x1, y1, x2, y2 = region[:4]
    left, top = round(x1 * sx), round(y1 * sy)
    return left, top, max(round(x2 * sx), left + 1), max(round(y2 * sy), top + 1)


def draft_scale(picture_size: tuple[int, int], width: int, height: int, *, where: str) -> tuple[float, float]:
    """(sx, sy) of a decode of a width x height photo; ImageError when it cannot be one (the file
    changed since it was imported): a draft scale is uniform and never enlarges."""
    sx, sy = picture_size[0] / width, picture_size[1] / height
    if abs(sx - sy) > DRAFT_TOLERANCE or sx > 1.0:
        raise ImageError(f"{where}: the file changed since import ({picture_size[0]}x{picture_size[1]}, "
                         f"imported as {width}x{height}); import it again")
    return sx, sy


def cut_and_fit(picture: Image.Image, width: int, height: int, box: Region | None, size: int, resize: str, *,
                where: str) -> np.ndarray:
    """Crop a decoded (maybe draft-scaled) picture of a width x height photo to ``box`` (original pixels)
    and fit it to S x S x 3 uint8."""
    sx, sy = draft_scale(picture.size, width, height, where=where)
    if box is not None:
        picture = picture.crop(crop_rect(box, sx, sy))
    return np.asarray(fit(picture, size, resize), dtype=np.uint8)


# --- fit -------------------------------------------------------------------------------------------------
def fit(im: Image.Image, size: int, mode: str = "crop") -> Image.Image:
    """Resize for a model input: 'crop' = short side then centre crop, 'letterbox' = pad."""
    if mode == "letterbox":
        return letterbox(im, size)
    if mode != "crop":
        raise ValueError(f"unknown resize mode {mode!r} (expected 'crop' or 'letterbox')")
    return short_side_crop(im, size)


def short_side_crop(im: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size``, then take the centred ``size`` x ``size`` square.

    Only the source region that survives the crop is resampled (Pillow's ``box``): the same filter
    centres and taps as resizing the whole image and cropping, in 60 % of the time for a 3:2 photo. The
    pixels match that up to fixed-point rounding: a landscape photo's almost exactly, a portrait's
    within one level of 255 on a quarter of the values (rarely up to five), with no shift."""
    w, h = im.size
    scale = size / min(w, h)
    full = (max(1, round(w * scale)), max(1, round(h * scale)))  # the whole image resized
    left, top = (full[0] - size) // 2, (full[1] - size) // 2
    if full == (w, h):
        return im.crop((left, top, left + size, top + size))
    sx, sy = w / full[0], h / full[1]  # source pixels per resized pixel
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def letterbox_layout(w: int, h: int, size: int) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """(scale, inner size, top-left offset) of a w x h photo letterboxed, centred, on a size x size canvas:
    scaled by ``size / max(w, h)`` to ``round(w * scale) x round(h * scale)``, pasted at
    ``((size - w') // 2, (size - h') // 2)``."""
    if w <= 0 or h <= 0 or size <= 0:
        raise ValueError(f"letterbox of a {w}x{h} image to {size}: sizes must be positive")
    scale = size / max(w, h)
    inner = (max(1, round(w * scale)), max(1, round(h * scale)))
    return scale, inner, ((size - inner[0]) // 2, (size - inner[1]) // 2)


def letterbox(im: Image.Image, size: int, fill: tuple[int, int, int] = (0, 0, 0), *,
              original: tuple[int, int] | None = None) -> Image.Image:
    """Fit the whole image in a size x size square, padding the rest. ``original``: the size of the photo
    ``im`` is a (smaller, draft) decode of; the layout is that photo's, so both give the same canvas."""
    _, inner, offset = letterbox_layout(*(original or im.size), size)
    resized = im if im.size == inner else im.resize(inner, Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(resized, offset)
    return canvas


# --- normalisation ---------------------------------------------------------------------------------------
def channel_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """mean and std as float32 per channel: the constants `normalise_` works with."""
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


def normalise_(x, mean, std):
    """In place on float32 values 0..255 (a NumPy array or a torch tensor): x * (1 / 255) - mean, then / std.
    ``mean`` and ``std`` are float32 (`channel_stats`) shaped to broadcast over ``x``'s channels. (A torch
    uint8 batch is made float32 by the caller, ``x.float()``: twice as fast as ``x * scale`` promoting it.)"""
    x *= UNIT_SCALE if isinstance(x, np.ndarray) else float(UNIT_SCALE)
    x -= mean
    x /= std
    return x


def standardise(x, mean, std):
    """The last two steps of `normalise_` on [0, 1] float32 values (an augmented batch): (x - mean) / std,
    into a new array or tensor."""
    out = x - mean
    out /= std
    return out


@lru_cache(maxsize=16)
def normalise_table(mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """3 x 256 float32, read-only: every uint8 value of each channel, normalised by `normalise_`."""
    m, s = channel_stats(mean, std)
    table = normalise_(np.repeat(np.arange(256, dtype=np.float32)[None, :], 3, axis=0), m[:, None], s[:, None])
    table.setflags(write=False)
    return table


def normalise(items: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """N x S x S x 3 (or S x S x 3) uint8 → N x 3 x S x S float32, C-contiguous: `normalise_` of every
    value, looked up in `normalise_table` (a third of the time of the arithmetic, and the same bits)."""
    batch = items[None] if items.ndim == 3 else items
    table = normalise_table(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    out = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), dtype=np.float32)
    for c in range(3):
        np.take(table[c], batch[..., c], out=out[:, c])
    return out
