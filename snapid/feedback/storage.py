"""Photos kept with the user's consent: content-addressed files under ``workspace.uploads``.

Each kept photo is decoded by the one safe decoder (`snapid.images`), turned upright, shrunk to at
most MAX_SIDE px and re-encoded as JPEG with no metadata at all, so EXIF (GPS, camera serials) never
reaches the disk. It is stored as ``<root>/<sha[:2]>/<sha>.jpg`` (sha256 of the stored bytes) with a
thumbnail ``<sha>.thumb.jpg``; clients only ever see the row's server-made UUID. Files are readable by
their owner only (0600, folders 0700): they are other people's photos.

Crash safety: files are written first (atomically), then the row, in one transaction. A crash in
between leaves a file without a row, which `sweep_orphans` removes at the next start; the reverse
(a row without its file) cannot be produced by a save, and is repaired by the same sweep. A full disk
gives StorageFull (507) with every file this save created removed.

Quota: the stored photos may total at most ``quota_bytes`` (SNAPID_PHOTO_QUOTA_BYTES; the rows' byte
counts, thumbnails aside). A save that would pass it raises QuotaFull and keeps nothing, checked
before the photo is decoded and again with its re-encoded size; the predict route still answers and
says the photo was not kept. Saves running at the same moment may pass the quota by their own sizes
(at most a few photos of 2048 px).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from snapid import images
from snapid.errors import NotFound, SnapidError
from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.track.tables import utcnow
from snapid.workspace import atomic_write_bytes

log = logging.getLogger("snapid.feedback")

MAX_SIDE = 2048         # stored photos: plenty for training, bounded on disk
THUMB_SIDE = 256
PHOTO_QUALITY, THUMB_QUALITY = 90, 80
ORPHAN_GRACE_S = 60.0   # a file this young may belong to a save still committing its row
_FULL = {errno.ENOSPC, errno.EDQUOT}


class StorageFull(SnapidError):
    code = "storage_full"
    status = 507


class QuotaFull(SnapidError):
    """The kept photos have reached SNAPID_PHOTO_QUOTA_BYTES: this one is not kept (the answer still comes)."""
    code = "photo_quota_full"
    status = 507


@dataclass(frozen=True)
class Rendered:
    """A photo ready to store: upright, bounded, metadata-free JPEG bytes and its thumbnail."""

    photo: bytes
    thumb: bytes
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.photo).hexdigest()


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=True)  # no exif=/icc_profile=: nothing but pixels
    return buf.getvalue()


def render(data: bytes, limits: images.DecodeLimits = images.DEFAULT_LIMITS) -> Rendered:
    """Decode (typed errors for bad bytes), turn upright, shrink and re-encode without metadata."""
    # a JPEG is decoded at the smallest DCT scale still >= MAX_SIDE: a 40 MP photo never becomes
    # 40 MP of pixels here (other formats decode whole; the callers bound how many run at once)
    im = images.decode(data, limits=limits, min_size=(MAX_SIDE, MAX_SIDE), name="uploaded photo")
    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    thumb = im.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return Rendered(_jpeg(im, PHOTO_QUALITY), _jpeg(thumb, THUMB_QUALITY), im.width, im.height)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _FULL
    return isinstance(exc, OperationalError) and "full" in str(exc.orig).lower()  # SQLite: "database or disk is full"


class PhotoStore:
    """Saved photos of one workspace: ``root`` is ``workspace.uploads``, rows live in ``engine``."""

    def __init__(self, root: Path, engine: Engine, *, keep_days: float = 30.0, quota_bytes: int = 0,
                 limits: images.DecodeLimits = images.DEFAULT_LIMITS):
        self.root, self.engine, self.keep_days, self.limits = Path(root), engine, keep_days, limits
        self.quota_bytes = quota_bytes  # 0: no quota
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- paths (only ever built from a sha256 read back from the database) ---
    def photo_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def thumb_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.thumb.jpg"

    # --- saving ---
    def save_upload(self, data: bytes, *, consent: bool, prediction_id: str | None) -> str | None:
        """Keep ``data`` only with consent; returns the new upload id, or None (nothing written)."""
        return self.save(data, prediction_id=prediction_id) if consent else None

    def _check_quota(self, adding: int = 0) -> None:
        if self.quota_bytes <= 0:
            return
        with transaction(self.engine) as s:
            used = track.stored_bytes(s)
        if used + adding > self.quota_bytes or used >= self.quota_bytes:
            raise QuotaFull(f"the kept photos take {used:,} bytes of the {self.quota_bytes:,}-byte quota "
                            "(SNAPID_PHOTO_QUOTA_BYTES); this photo was not kept")

    def save(self, data: bytes, *, prediction_id: str | None) -> str:
        self._check_quota()  # before decoding: a full store costs nothing more
        rendered = render(data, self.limits)
        self._check_quota(len(rendered.photo))
        sha = rendered.sha256
        created: list[Path] = []
        try:
            for path, blob in ((self.photo_path(sha), rendered.photo), (self.thumb_path(sha), rendered.thumb)):
                existed = path.exists()  # same content already stored: the file is shared
                # written even when present (same bytes, atomic replace): a sweep may be deleting the
                # other row's copy right now, and this row must never point at nothing
                atomic_write_bytes(path, blob, private=True)
                if not existed:
                    created.append(path)
            upload_id = str(uuid.uuid4())
            kept_until = utcnow() + timedelta(days=self.keep_days) if self.keep_days > 0 else None
            with transaction(self.engine) as s:
                track.add_upload(s, id=upload_id, sha256=sha, prediction_id=prediction_id, size=len(rendered.photo),
                                 width=rendered.width, height=rendered.height, kept_until=kept_until)
            return upload_id
        except BaseException as exc:
            for path in created:  # no file without its row
                path.unlink(missing_ok=True)
            if _is_disk_full(exc):
                raise StorageFull(f"no space left to save the photo under {self.root}; "
                                  "free some disk space (nothing was kept)") from None
            raise

    def save_all(self, photos: list[bytes], *, consent: bool, prediction_id: str | None) -> list[str]:
        """Every photo of one prediction, or none (a failure, QuotaFull included, removes the ones already kept)."""
        if not consent:
            return []
        ids: list[str] = []
        try:
            for data in photos:
                ids.append(self.save(data, prediction_id=prediction_id))
        except BaseException:
            self.delete(ids)
            raise
        return ids

    # --- reading ---
    def _sha_of(self, upload_id: str) -> str:
        with transaction(self.engine) as s:
            return track.get_upload(s, upload_id=upload_id)["sha256"]

    def thumbnail(self, upload_id: str) -> Path:
        """The thumbnail file of an upload id; NotFound when the id or its file is gone."""
        path = self.thumb_path(self._sha_of(upload_id))
        if not path.is_file():
            raise NotFound(f"the photo of upload {upload_id!r} is no longer stored")
        return path

    def photo(self, upload_id: str) -> Path:
        path = self.photo_path(self._sha_of(upload_id))
        if not path.is_file():
            raise NotFound(f"the photo of upload {upload_id!r} is no longer stored")
        return path

    # --- deleting and sweeping ---
    def delete(self, upload_ids: list[str]) -> int:
        """Delete rows, then the files no remaining row shares. Returns how many files went."""
        if not upload_ids:
            return 0
        with transaction(self.engine) as s:
            unreferenced = track.delete_uploads(s, ids=list(upload_ids))
        return sum(self._remove_files(sha) for sha in unreferenced)

    def _remove_files(self, sha256: str) -> int:
        removed = 0
        for path in (self.photo_path(sha256), self.thumb_path(sha256)):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def sweep_retention(self, keep_days: float | None = None, *, now: datetime | None = None) -> dict:
        """Delete photos older than ``keep_days`` (default: the store's), and any past its own kept_until."""
        keep_days = self.keep_days if keep_days is None else keep_days
        now = now or utcnow()
        before = now - timedelta(days=keep_days) if keep_days > 0 else None
        with transaction(self.engine) as s:
            expired = track.expired_uploads(s, created_before=before, now=now)
        files = self.delete(expired)
        if expired:
            log.info("retention: deleted %d saved photos (%d files) older than %g days", len(expired), files, keep_days)
        return {"deleted_uploads": len(expired), "deleted_files": files, "keep_days": keep_days}

    def sweep_orphans(self, *, min_age_s: float = ORPHAN_GRACE_S) -> dict:
        """Files with no row (a save killed before its commit) and temporary files are removed once
        older than ``min_age_s``; rows whose photo is missing are deleted."""
        with transaction(self.engine) as s:
            by_sha = track.uploads_by_sha(s)
        cutoff = time.time() - min_age_s
        removed = 0
        for path in self._stored_files():
            sha = path.name.split(".")[0]
            temporary = path.name.startswith(".")
            if (temporary or sha not in by_sha) and _mtime(path) <= cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        missing = [i for sha, ids in by_sha.items() if not self.photo_path(sha).is_file() for i in ids]
        if missing:
            with transaction(self.engine) as s:
                for sha in track.delete_uploads(s, ids=missing):
                    removed += self._remove_files(sha)  # a lone thumbnail
        if removed or missing:
            log.info("upload sweep: removed %d orphan files and %d rows without a photo", removed, len(missing))
        return {"orphan_files": removed, "rows_without_file": len(missing)}

    def _stored_files(self):
        """Files in the two-level layout only; anything else under the root is left alone."""
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if len(sub.name) == 2 and sub.is_dir() and not sub.is_symlink():
                yield from (p for p in sub.iterdir() if p.is_file() and not p.is_symlink())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # already gone: nothing to do
