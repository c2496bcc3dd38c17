"""The ONE image decoder every stage uses (import, prepare, training, serving); what is done with the
decoded picture (decode size, crop, fit, normalisation) is `snapid.geometry`.

Rules (see ../shared/BAD_INPUTS.md):
- the decoder decides the type from the bytes, never from a file name or Content-Type;
- only JPEG, PNG, WebP, GIF and BMP are opened (no Ghostscript, no TIFF/EPS/PDF plug-ins);
- the pixel cap is checked from the header, before any pixel is decoded;
- animated files give frame 0, frames are never iterated;
- EXIF orientation is applied, and every mode becomes RGB the same way (alpha over white);
- JPEGs can be decoded at 1/2, 1/4 or 1/8 scale in the DCT ("draft"), the fast path;
- decoding work is bounded in time (`DecodeLimits.timeout_s`, CPU seconds): Pillow reads every byte
  through `_Bounded`, which checks the bound on each read and raises DecodeTimeout (422) past it. The
  decoders get their input in chunks, so the check runs between chunks of real work; a multi-scan
  JPEG's chunks also end before each scan, because one scan header of ten bytes can start a pass over
  every block of the picture (thousands of them would otherwise cost minutes of CPU in one chunk).
  What runs between two reads is bounded by the pixel cap: one scan, the inflation of one chunk, one
  frame (a WebP is decoded by libwebp in one call, in time linear in its pixels and bytes);
- the EXIF orientation is read without decoding pixels (a PNG's eXIf after its image data is found by
  walking the chunk headers), and pixels are decoded once.

This module must not import torch: the server uses it.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from snapid import geometry
from snapid.errors import (
    CorruptImage,
    DecodeTimeout,
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
_SCAN = b"\xff\xda"        # a JPEG's start-of-scan marker (never inside entropy-coded data)
_PNG_METADATA = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")  # chunks that can carry EXIF or XMP after the pixels

# A truncated file is an error, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 40_000_000
    min_side: int = 32
    max_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 5.0  # CPU seconds one open or decode may take (0: no bound)

    @classmethod
    def from_settings(cls, settings, *, upload: bool = False) -> DecodeLimits:
        """The limits ``settings`` (a snapid.config.Settings) set: an upload is capped by the request body
        size, a file on disk by ``max_file_bytes``."""
        return cls(max_pixels=settings.max_pixels, min_side=settings.min_side,
                   max_bytes=settings.max_body_bytes if upload else settings.max_file_bytes,
                   timeout_s=settings.decode_timeout_s)


DEFAULT_LIMITS = DecodeLimits()


class _Bounded(io.BytesIO):
    """The bytes of one image, read by Pillow under a time bound (see the module docstring).

    The bound is CPU time of the thread that decodes, so a photo decoded slowly because the machine is
    busy is not refused: the cheap wall clock is checked on each read, the thread's CPU time only once
    the wall clock has passed the bound (CPU time never runs ahead of it)."""

    def __init__(self, data: bytes, *, timeout_s: float, name: str):
        super().__init__(data)
        self._data, self._timeout, self._name = data, timeout_s, name
        self._thread, self._cpu_start = threading.get_ident(), time.thread_time()
        self._check_at = time.monotonic() + timeout_s if timeout_s > 0 else float("inf")
        self.by_scan = False  # set for a JPEG's pixel data: reads end before each scan

    def read(self, size: int | None = -1) -> bytes:
        if time.monotonic() >= self._check_at:
            self._check()
        if self.by_scan and size is not None and size > 1:
            here = self.tell()
            scan = self._data.find(_SCAN, here + 1, here + size)
            if scan > 0:
                size = scan - here
        return super().read(size)

    def first_scan_components(self) -> int:
        """Components in the scan whose header ends at the current position (Pillow stops opening a
        JPEG right after its first scan header); 0 when there is none."""
        sos = self._data.rfind(_SCAN, 0, self.tell())
        return self._data[sos + 4] if 0 <= sos and sos + 4 < len(self._data) else 0

    def _check(self) -> None:
        if threading.get_ident() != self._thread:  # opened on one thread, decoded on another: count from here
            self._thread, self._cpu_start = threading.get_ident(), time.thread_time()
        used = time.thread_time() - self._cpu_start
        if used >= self._timeout:
            raise DecodeTimeout(f"{self._name}: decoding took more than {self._timeout:g} s of CPU time and was "
                                "stopped; send an ordinary JPEG or PNG photo")
        self._check_at = time.monotonic() + (self._timeout - used)


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
    """Open from bytes or a binary file: header only. Checks type, pixel cap and minimum side. Every
    later read of this image (its pixels, its metadata) is under ``limits.timeout_s`` from now."""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data) if isinstance(data, memoryview) else data.read()
    fp = _Bounded(data, timeout_s=limits.timeout_s, name=name)
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
        raise TooManyPixels(f"{name}: {width}x{height} is {width * height:,} pixels, "
                            f"above the cap of {limits.max_pixels:,}")
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(f"{name}: {width}x{height} is smaller than the minimum side of {limits.min_side} px")
    return im


def orientation(im: Image.Image) -> int:
    """The EXIF orientation, 1 to 8 (1 when absent or unreadable). Never decodes pixels: Pillow's own
    PNG getexif() loads the whole image to look past its pixel data, so an image still to be loaded
    whose EXIF may follow its pixels (a PNG) has its trailing chunks read here instead."""
    try:
        if isinstance(im, PngImagePlugin.PngImageFile) and im.tile and "exif" not in im.info:
            probe = Image.new("L", (1, 1))  # Pillow's own reading of EXIF, raw profiles and XMP from info
            probe.info = {**im.info, **_png_trailing_info(im)}
            exif = probe.getexif()
        else:
            exif = im.getexif()
        value = exif.get(ORIENTATION_TAG, 1)
    except DecodeTimeout:
        raise
    except Exception:  # a broken EXIF block must not break decoding: treat as upright
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _png_trailing_info(im: PngImagePlugin.PngImageFile) -> dict:
    """What the metadata chunks after a PNG's first IDAT add to its info (eXIf, text, XMP), read with
    Pillow's own chunk readers; every other chunk, the image data included, is skipped unread."""
    fp = im.fp
    where = fp.tell()
    stream = PngImagePlugin.PngStream(fp)
    try:
        fp.seek(im.tile[0][2] - 8)  # the header of the first IDAT chunk
        while True:
            kind, _, length = stream.read()
            if kind == b"IEND":
                break
            if kind in _PNG_METADATA:
                stream.call(kind, fp.tell(), length)
                fp.seek(4, os.SEEK_CUR)  # its CRC
            else:
                fp.seek(length + 4, os.SEEK_CUR)
    except (struct.error, SyntaxError, EOFError, OSError, ValueError, UnicodeDecodeError):
        pass  # a broken or truncated tail: what was found so far
    finally:
        fp.seek(where)
    return stream.im_info


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
        if min_size is not None and im.format == "JPEG":
            turn = orientation(im)  # a JPEG's EXIF is in its header
            want = (min_size[1], min_size[0]) if turn in _SWAPS_AXES else min_size
            im.draft(None, (max(1, want[0]), max(1, want[1])))
        if im.format == "JPEG" and isinstance(im.fp, _Bounded) and _several_scans(im):
            im.fp.by_scan = True  # the time bound is checked between scans
        im.load()  # frame 0 only: animated files are never iterated; the pixels are decoded this once
        if orientation(im) != 1:  # read after loading: a PNG's EXIF may follow its pixels
            im = ImageOps.exif_transpose(im)
        return to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name}: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError) as exc:
        raise CorruptImage(f"{name}: cannot decode ({exc})") from None


def _several_scans(im: Image.Image) -> bool:
    """libjpeg's own rule: a JPEG has several scans when it is progressive or its first scan holds fewer
    components than the frame. Any other JPEG is one pass over its blocks (libjpeg refuses a second
    scan), so its reads need not stop at scan markers (searching for them costs about 3 % of a decode)."""
    return bool(im.info.get("progressive")) or im.fp.first_scan_components() < getattr(im, "layers", 4)


def decode_file(path: Path, *, limits: DecodeLimits = DEFAULT_LIMITS,
                min_size: tuple[int, int] | None = None) -> Image.Image:
    return decode(read_file(path, limits.max_bytes), limits=limits, min_size=min_size, name=str(path))


def decode_fitted(data: bytes, size: int, resize: str, *, limits: DecodeLimits = DEFAULT_LIMITS,
                  name: str = "photo") -> np.ndarray:
    """S x S x 3 uint8 of a whole photo, made the way the prepare cache made training items: decode at
    `geometry.decode_size` (the JPEG draft fast path), then `geometry.fit`. Serving and `snapid add-class` call it."""
    header = open_image(data, limits, name)  # type, pixel cap and minimum side, before any pixel
    width, height = upright_size(header)
    picture = decode(data, limits=limits, name=name,
                     min_size=geometry.decode_size(width, height, None, size, resize))
    return np.asarray(geometry.fit(picture, size, resize), dtype=np.uint8)

