"""Crafted image files that cost the decoder far more than their size suggests, or whose metadata sits
where a reader must look for it (tests of snapid.images' bounds)."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

from PIL import Image


@lru_cache(maxsize=4)
def many_scan_jpeg(side: int = 6000, scans: int = 3000) -> bytes:
    """A grey progressive JPEG of side x side pixels (36 MP at 6000, under the 40 MP cap) followed by
    ``scans`` empty AC scans of its one component before EOI: 10 bytes each, yet libjpeg runs every
    one over all (side / 8)^2 blocks, so 30 KB of scans cost seconds of CPU (3000 scans at 6000 px:
    about 10 s on one of this machine's cores). libjpeg only warns about such a progression, and Pillow
    silences warnings: left alone, it decodes to a valid grey picture in the end."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True, quality=50)
    data = buf.getvalue()
    # SOS, length 8, one component (id 1, tables 0/0), spectral 1..63, successive approximation 0
    empty_scan = b"\xff\xda\x00\x08\x01\x01\x00\x01\x3f\x00"
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + empty_scan * scans + data[eoi:]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG file."""
    out, pos = [], 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        out.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(k + p)) for k, p in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def png_with_exif_after_pixels(im: Image.Image, exif: bytes) -> bytes:
    """A PNG whose eXIf chunk follows its image data (allowed, and what some tools write): a reader
    learns its orientation only past the IDAT chunks."""
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif)
    chunks = png_chunks(buf.getvalue())
    exif_chunk = next(c for c in chunks if c[0] == b"eXIf")
    rest = [c for c in chunks if c[0] not in (b"eXIf", b"IEND")]
    return png_from_chunks(rest + [exif_chunk, (b"IEND", b"")])
