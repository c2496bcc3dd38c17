"""Read one image file once: sha256, size, colour mode and small statistics for inspect.

Runs in worker processes during import; returns ImageFacts or a Rejected record, never raises
for a bad file (a bad file is data to report, not a crash).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import imagehash
import numpy as np

from snapid import images
from snapid.data.manifest import ImageFacts, Rejected
from snapid.errors import ImageError

STATS_SIZE = 64


def image_facts(path: Path, rel: str, limits: images.DecodeLimits) -> ImageFacts | Rejected:
    try:
        st = os.stat(path)
    except OSError as exc:
        return Rejected(rel, "unreadable", exc.strerror or str(exc))
    if not stat.S_ISREG(st.st_mode):
        return Rejected(rel, "not_a_file", "not a regular file")
    try:
        data = images.read_file(path, limits.max_bytes)
        header = images.open_image(data, limits, rel)
        width, height = images.upright_size(header)
        fmt, mode = header.format or "?", header.mode
        picture = images.decode(data, limits=limits, min_size=(STATS_SIZE, STATS_SIZE), name=rel)
    except ImageError as exc:
        return Rejected(rel, exc.code, exc.message)
    except OSError as exc:
        return Rejected(rel, "unreadable", exc.strerror or str(exc))
    picture.thumbnail((STATS_SIZE, STATS_SIZE))
    pixels = np.asarray(picture)
    hist = [int(n) for c in range(3) for n in np.bincount(pixels[..., c].ravel() >> 4, minlength=16)]
    return ImageFacts(
        sha256=hashlib.sha256(data).hexdigest(), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns,
        width=width, height=height, format=fmt, mode=mode, phash=str(imagehash.phash(picture)),
        mean_rgb=[round(float(v), 2) for v in pixels.reshape(-1, 3).mean(axis=0)], hist=hist,
    )
