"""The thumbnails a hand-off session keeps instead of the photos."""

from __future__ import annotations

import base64
import io

from PIL import Image

from snapid import images

THUMB_SIDE, THUMB_QUALITY = 320, 80


def thumbnail(data: bytes, limits: images.DecodeLimits) -> bytes:
    """A small upright JPEG of an uploaded photo, with no metadata (the photo itself is not kept)."""
    im = images.decode(data, limits=limits, min_size=(THUMB_SIDE, THUMB_SIDE), name="uploaded photo")
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
