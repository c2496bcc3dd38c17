"""The ONE image decoder every stage uses (import, prepare, training, serving).

Rules (see ../shared/BAD_INPUTS.md):
- the decoder decides the type from the bytes, never from a file name or Content-Type;
- only JPEG, PNG, WebP, GIF and BMP are opened (no Ghostscript, no TIFF/EPS/PDF plug-ins);
- the pixel cap is checked from the header, before any pixel is decoded;
- animated files give frame 0, frames are never iterated;
- EXIF orientation is applied, and every mode becomes RGB the same way (alpha over white);
- JPEGs can be decoded at 1/2, 1/4 or 1/8 scale in the DCT ("draft"), the fast path.

This module must not import torch: the server uses it.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from snapid.errors import (
    CorruptImage,
    EmptyFile,
    FileTooLarge,
    ImageTooSmall,
    TooManyPixels,
    UnsupportedImage,
)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees

# A truncated file is an error, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 40_000_000
    min_side: int = 32
    max_bytes: int = 64 * 1024 * 1024


DEFAULT_LIMITS = DecodeLimits()


def read_file(path: Path, max_bytes: int = DEFAULT_LIMITS.max_bytes) -> bytes:
    """Read a whole file, refusing one above ``max_bytes`` (checked before reading)."""
    size = os.stat(path).st_size
    if size > max_bytes:
        raise FileTooLarge(f"{path}: {size} bytes is above the limit of {max_bytes} bytes")
    with open(path, "rb") as fh:
        return fh.read(max_bytes + 1)


def _sniff_unsupported(head: bytes) -> str | None:
    """Name formats we refuse on purpose, so the message can say what to send instead."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    if head.startswith(b"SIMPLE  ="):
        return "FITS"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith(b"<?xml") or b"<svg" in stripped:
        return "SVG"
    return None


def open_image(data: bytes | BinaryIO, limits: DecodeLimits = DEFAULT_LIMITS, name: str = "image") -> Image.Image:
    """Open from bytes or a binary file: header only. Checks type, pixel cap and minimum side."""
    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    head = fp.read(64)
    fp.seek(0)
    if not head:
        raise EmptyFile(f"{name}: the file is empty (0 bytes)")
    refused = _sniff_unsupported(head)
    if refused:
        raise UnsupportedImage(f"{name}: {refused} is not supported; send JPEG or PNG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name}: {exc}") from None
    except UnidentifiedImageError:
        raise UnsupportedImage(f"{name}: not a JPEG, PNG, WebP, GIF or BMP image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise CorruptImage(f"{name}: unreadable image header ({exc})") from None
    width, height = im.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"{name}: {width}x{height} is {width * height:,} pixels, above the cap of {limits.max_pixels:,}")
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(f"{name}: {width}x{height} is smaller than the minimum side of {limits.min_side} px")
    return im


def orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not break decoding: treat as upright
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(im: Image.Image) -> tuple[int, int]:
    """Size as displayed, after the EXIF rotation."""
    w, h = im.size
    return (h, w) if orientation(im) in _SWAPS_AXES else (w, h)


def to_rgb(im: Image.Image) -> Image.Image:
    """Every mode to 8-bit RGB, the same way everywhere: alpha composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        # 16/32-bit greyscale: scale 0..65535 to 0..255 (Pillow's convert would clip instead)
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 1.0
        grey = np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if mode == "L" and "transparency" in im.info:
        has_alpha = True
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def decode(
    data: bytes | BinaryIO,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    min_size: tuple[int, int] | None = None,
    name: str = "image",
) -> Image.Image:
    """Decode to an upright RGB image.

    ``min_size`` (upright width, height) enables the fast path: a JPEG is decoded at the
    smallest DCT scale that still covers it, typically 2-8x faster for a 224 px target.
    """
    im = open_image(data, limits, name)
    try:
        turn = orientation(im)
        if min_size is not None and im.format == "JPEG":
            want = (min_size[1], min_size[0]) if turn in _SWAPS_AXES else min_size
            im.draft(None, (max(1, want[0]), max(1, want[1])))
        im.load()  # frame 0 only: animated files are never iterated
        if turn != 1:
            im = ImageOps.exif_transpose(im)
        return to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name}: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError) as exc:
        raise CorruptImage(f"{name}: cannot decode ({exc})") from None


def decode_file(path: Path, *, limits: DecodeLimits = DEFAULT_LIMITS, min_size: tuple[int, int] | None = None) -> Image.Image:
    return decode(read_file(path, limits.max_bytes), limits=limits, min_size=min_size, name=str(path))


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


def letterbox(im: Image.Image, size: int, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Fit the whole image in a size x size square, padding the rest."""
    w, h = im.size
    scale = size / max(w, h)
    inner = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = im.resize(inner, Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(resized, ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def fit(im: Image.Image, size: int, mode: str = "crop") -> Image.Image:
    """Resize for a model input: 'crop' = short side then centre crop, 'letterbox' = pad."""
    if mode == "letterbox":
        return letterbox(im, size)
    if mode != "crop":
        raise ValueError(f"unknown resize mode {mode!r} (expected 'crop' or 'letterbox')")
    return short_side_crop(im, size)


def fast_min_size(width: int, height: int, short: int) -> tuple[int, int]:
    """The smallest decoded size (upright) that still gives ``short`` px on the short side."""
    scale = short / min(width, height)
    return (max(1, int(width * scale)), max(1, int(height * scale)))
