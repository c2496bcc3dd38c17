"""Saved photos: EXIF stripped and upright, content-addressed, atomic, disk-full safe, swept."""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from snapid.errors import CorruptImage, NotFound
from snapid.feedback import storage
from snapid.feedback.storage import PhotoStore, StorageFull
from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.track.tables import utcnow
from tests.conftest import encode, photo

GPS_IFD = 0x8825


def exif_photo(size=(120, 80), orientation: int = 6) -> bytes:
    """A JPEG with an EXIF orientation and a GPS position, as phones write them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (37.0, 33.0, 58.0), 3: "E", 4: (126.0, 58.0, 40.0)})
    return encode(photo(size), "JPEG", exif=exif.tobytes())


@pytest.fixture
def store(home, engine) -> PhotoStore:
    return PhotoStore(home.uploads, engine, keep_days=30)


def rows(engine) -> dict[str, list[str]]:
    with transaction(engine) as s:
        return track.uploads_by_sha(s)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_exif_orientation_stored_upright_and_gps_stripped(store, engine):
    source = exif_photo()
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(GPS_IFD)  # the fixture really carries GPS
    upload_id = store.save(source, prediction_id=None)
    stored = Image.open(store.photo(upload_id))
    assert stored.format == "JPEG"
    assert stored.size == (80, 120)  # orientation 6 turned upright: width and height swap
    assert not stored.getexif() and not stored.getexif().get_ifd(GPS_IFD)
    stored_bytes = store.photo(upload_id).read_bytes()
    assert b"Exif" not in stored_bytes and b"PhoneMaker" not in stored_bytes
    assert max(Image.open(store.thumbnail(upload_id)).size) <= storage.THUMB_SIDE


def test_content_addressed_shared_file_deleted_with_last_row(store, engine, home):
    data = encode(photo((200, 150), seed=3))
    first, second = store.save(data, prediction_id=str(uuid.uuid4())), store.save(data, prediction_id=None)
    assert first != second
    (sha, ids), = rows(engine).items()
    assert sorted(ids) == sorted([first, second])
    assert store.photo_path(sha).read_bytes() and store.photo_path(sha).parent.parent == home.uploads
    assert store.photo_path(sha).name == f"{sha}.jpg"
    assert store.delete([first]) == 0 and store.photo_path(sha).exists()  # still shared
    assert store.delete([second]) == 2 and files_under(home.uploads) == []
    with pytest.raises(NotFound):
        store.thumbnail(first)


def test_no_consent_keeps_nothing(store, engine, home):
    assert store.save_upload(exif_photo(), consent=False, prediction_id=str(uuid.uuid4())) is None
    assert store.save_all([exif_photo()], consent=False, prediction_id=None) == []
    assert rows(engine) == {} and files_under(home.uploads) == []


def test_bad_bytes_typed_error_nothing_written(store, engine, home):
    with pytest.raises(CorruptImage):
        store.save(exif_photo()[:300], prediction_id=None)
    assert rows(engine) == {} and files_under(home.uploads) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 300 KB tmpfs (needs root and mount; skipped elsewhere)."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mountpoint)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=False)


def test_disk_full_507_no_row_no_partial_file_then_recovers(tiny_disk, engine):
    """BAD_INPUTS: Disk full (ENOSPC) while saving an upload → 507 storage_full; no row without its
    file; partial file removed; recovers without a restart."""
    store = PhotoStore(tiny_disk / "uploads", engine)
    filler = tiny_disk / "filler"
    filler.write_bytes(os.urandom(290 * 1024))
    big = encode(photo((900, 700), seed=5), "PNG")  # noisy: its JPEG is far above the 10 KB left
    with pytest.raises(StorageFull) as caught:
        store.save(big, prediction_id=None)
    assert caught.value.status == 507 and caught.value.code == "storage_full"
    assert rows(engine) == {} and files_under(tiny_disk / "uploads") == []
    filler.unlink()
    assert store.save(big, prediction_id=None)  # the same store works once space is back
    assert len(rows(engine)) == 1


def test_disk_full_on_thumbnail_removes_the_photo_already_written(store, engine, home, monkeypatch):
    """The second file fails: the first one this save created must go too (no file without a row)."""
    real = storage.atomic_write_bytes

    def full_on_thumbnail(path, data, **kw):
        if path.name.endswith(".thumb.jpg"):
            raise OSError(28, "No space left on device")
        real(path, data, **kw)

    monkeypatch.setattr(storage, "atomic_write_bytes", full_on_thumbnail)
    with pytest.raises(StorageFull):
        store.save(exif_photo(), prediction_id=None)
    assert rows(engine) == {} and files_under(home.uploads) == []


def test_sweep_orphans_removes_files_without_rows_and_rows_without_files(store, engine, home):
    kept = store.save(encode(photo(seed=1)), prediction_id=None)
    lost = store.save(encode(photo(seed=2)), prediction_id=None)
    with transaction(engine) as s:
        lost_sha = track.get_upload(s, upload_id=lost)["sha256"]
    store.photo_path(lost_sha).unlink()                     # a row whose photo vanished
    orphan = store.photo_path("ab" + "0" * 62)              # a file whose row never committed
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x")
    temp = orphan.parent / ".tmp-half.jpg.tmp"
    temp.write_bytes(b"half")
    young = store.photo_path("cd" + "1" * 62)
    young.parent.mkdir(parents=True, exist_ok=True)
    young.write_bytes(b"y")
    old = time.time() - 3600
    for path in (orphan, temp):
        os.utime(path, (old, old))
    result = store.sweep_orphans(min_age_s=60)
    assert result == {"orphan_files": 3, "rows_without_file": 1}  # orphan, temp, the lost row's thumbnail
    assert not orphan.exists() and not temp.exists() and young.exists()  # too young: maybe a save in flight
    assert store.photo(kept).exists()
    assert list(rows(engine).values()) == [[kept]]


def test_sweep_retention_deletes_only_expired(store, engine, home):
    fresh = store.save(encode(photo(seed=1)), prediction_id=None)
    assert store.sweep_retention(30)["deleted_uploads"] == 0
    later = utcnow() + timedelta(days=10)
    assert store.sweep_retention(30, now=later)["deleted_uploads"] == 0
    result = store.sweep_retention(5, now=later)
    assert result == {"deleted_uploads": 1, "deleted_files": 2, "keep_days": 5}
    assert rows(engine) == {} and files_under(home.uploads) == []
    with pytest.raises(NotFound):
        store.photo(fresh)


def test_sweep_retention_honours_each_rows_own_limit(home, engine):
    short = PhotoStore(home.uploads, engine, keep_days=1)
    short.save(encode(photo(seed=4)), prediction_id=None)
    # keep_days 0 means "no age limit" for the sweep, but the row's own kept_until (1 day) still applies
    assert short.sweep_retention(0, now=utcnow() + timedelta(days=2))["deleted_uploads"] == 1
