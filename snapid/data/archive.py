"""Safe unpacking of dataset archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz) into the workspace.

The whole archive is refused (../shared/BAD_INPUTS.md) when any member is absolute, climbs out
with `..`, is a link or a device, or when it expands more than 100 times its size (a zip bomb) or
past the size limit. The limits are checked while reading, never after: a zip's sizes come from its
central directory before anything is decompressed; a tar's members are checked one by one as their
headers are read (the running total of declared sizes), and the decompressed stream of a compressed
tar is itself bounded, so a read or seek past 100 times the archive's size (plus 1 MiB, and 3 KiB
per member for its headers and padding) is refused before it is decompressed: a header declaring gigabytes,
or concatenated compressed streams, cost no more than the limit. Every byte is counted again while copying,
chunk by chunk, so a header that lies about sizes cannot get past the caps; zip CRCs are checked, and the number of
files written must equal the number listed — the pill project lost files silently when unzipping.
Unpacking goes to a temporary folder renamed at the end, and removed on any refusal.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from snapid.data.multipart import INFOZIP, NUMBERED, Parts, find_parts
from snapid.errors import DatasetError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
MAX_RATIO = 100
MAX_MEMBERS = 2_000_000
CHUNK = 1 << 20
STREAM_SLACK = 1 << 20   # a compressed tar's stream may pass 100x by this much, plus MEMBER_SLACK per member:
MEMBER_SLACK = 3 << 10   # headers (pax ones too) and padding compress far better than photos and are not files
COMPRESSED = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")), (b"BZh", bz2.BZ2File),
              (b"\xfd7zXZ\x00", lzma.LZMAFile))


class ArchiveRejected(DatasetError):
    code = "archive_rejected"


@dataclass(frozen=True)
class Member:
    name: str
    size: int


def is_archive(path: Path) -> bool:
    """A .zip, .tar, .tar.gz, .tar.bz2 or .tar.xz (.tgz, .tbz2, .txz), or a part of one split into parts
    (data.zip.001, data.z01)."""
    name = path.name.lower()
    return path.is_file() and (name.endswith(ARCHIVE_SUFFIXES) or bool(NUMBERED.match(name) or INFOZIP.match(name)))


def _source(archive: Path) -> Parts:
    """The archive as parts: a split archive's parts (checked complete), else the one file."""
    return find_parts(archive) or Parts(archive.name, (archive,))


def _safe_name(archive: Path, raw: str) -> str:
    name = raw.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts or "\x00" in name:
        raise ArchiveRejected(f"{archive}: member {raw!r} would be written outside the folder; the archive is refused")
    return str(PurePosixPath(*[p for p in parts if p not in ("", ".")]))


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[Member]:
    members = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveRejected(f"{archive}: member {info.filename!r} is a symbolic link; the archive is refused")
        if info.is_dir():
            continue
        members.append(Member(_safe_name(archive, info.filename), info.file_size))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile, max_bytes: int, packed: int, stream) -> list[Member]:
    """The members, each checked as its header is read: the running total is checked before tarfile skips
    (and so decompresses) the member's data on its way to the next header."""
    members, total = [], 0
    for info in tf:
        if isinstance(stream, _Bounded):
            stream.grant(MEMBER_SLACK)
        if info.issym() or info.islnk() or info.isdev() or info.isfifo():
            raise ArchiveRejected(f"{archive}: member {info.name!r} is a link or a device; the archive is refused")
        if info.isfile():
            members.append(Member(_safe_name(archive, info.name), info.size))
            total += info.size
            _check_expansion(archive, total, max_bytes, packed)
        if len(members) > MAX_MEMBERS:
            break
    return members


def _check_expansion(archive: Path, total: int, max_bytes: int, packed: int) -> None:
    packed = max(packed, 1)
    if total > MAX_RATIO * packed:
        raise ArchiveRejected(f"{archive}: expands {total / packed:.0f}x (over {MAX_RATIO}x): "
                              "refused as a possible zip bomb")
    if total > max_bytes:
        raise ArchiveRejected(f"{archive}: {total:,} bytes unpacked is above the limit of {max_bytes:,}")


def _check_totals(archive: Path, members: list[Member], max_bytes: int, packed: int) -> None:
    if len(members) > MAX_MEMBERS:
        raise ArchiveRejected(f"{archive}: more than {MAX_MEMBERS:,} files; unpack it yourself and import the folder")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ArchiveRejected(f"{archive}: the same path appears twice; the archive is refused")
    _check_expansion(archive, sum(m.size for m in members), max_bytes, packed)


class _Bounded:
    """A compressed tar's decompressed stream, as tarfile reads it, refused (ArchiveRejected) as soon as a read or a
    seek would go past ``limit`` bytes from its start: before those bytes are decompressed. tarfile passes a
    member's data by seeking, so a header declaring gigabytes is refused at that seek, whatever the headers said."""

    def __init__(self, stream, limit: int, archive: Path, packed: int):
        self._stream, self._limit, self._archive, self._packed, self._pos = stream, limit, archive, packed, 0

    def _refuse(self) -> ArchiveRejected:
        return ArchiveRejected(f"{self._archive}: expands more than {MAX_RATIO}x its {self._packed:,} bytes: "
                               "refused as a possible zip bomb")

    def read(self, size: int | None = -1) -> bytes:
        room = self._limit - self._pos + 1
        data = self._stream.read(room if size is None or size < 0 else min(size, room))
        self._pos += len(data)
        if self._pos > self._limit:
            raise self._refuse()
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR):
            raise io.UnsupportedOperation("seek from the end of a compressed stream")
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if target > self._limit:
            raise self._refuse()
        self._pos = self._stream.seek(target)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def grant(self, extra: int) -> None:
        """Allow ``extra`` more bytes (a member's headers and padding)."""
        self._limit += extra

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tar_stream(archive: Path, raw: io.BufferedReader, packed: int):
    """The tar inside ``raw``: decompressed (gzip, bzip2, xz, told by their magic bytes) through _Bounded, or raw."""
    head = raw.peek(6)[:6]
    for magic, opener in COMPRESSED:
        if head.startswith(magic):
            return _Bounded(opener(raw), MAX_RATIO * max(packed, 1) + STREAM_SLACK, archive, packed)
    return raw


def _copy(archive: Path, source, target: Path, declared: int, budget: list[int]) -> None:
    """Stream one member, never writing more than it declared or than the archive's budget."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > declared or budget[0] < 0:
                raise ArchiveRejected(f"{archive}: {target.name} holds more data than its header says; "
                                      "the archive is refused")
            out.write(chunk)
    if written != declared:
        raise ArchiveRejected(f"{archive}: {target.name} is truncated ({written} of {declared} bytes)")


def unpack(archive: Path, dest_root: Path, *, max_bytes: int = 64 << 30) -> Path:
    """Unpack into dest_root/<archive stem>-<sha256 prefix>/ (reused when already complete); returns it.
    A split archive (data.zip.001 …, data.z01 … data.zip) is read from its parts as one, never joined on disk."""
    source = _source(archive)
    digest = hashlib.sha256()
    for part in source.paths:
        with open(part, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    stem = source.name.split(".")[0] or "archive"
    dest = dest_root / f"{stem}-{digest.hexdigest()[:12]}"
    if (dest / ".snapid-unpacked").exists():
        return dest
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=dest_root))
    try:
        _unpack_into(archive, source, tmp, max_bytes)
        (tmp / ".snapid-unpacked").write_text(archive.name)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _unpack_into(archive: Path, source: Parts, tmp: Path, max_bytes: int) -> None:
    packed = source.size
    try:
        if source.name.lower().endswith(".zip"):
            with source.open() as raw, zipfile.ZipFile(raw) as zf:
                members = _zip_members(archive, zf)
                _check_totals(archive, members, max_bytes, packed)
                budget = [sum(m.size for m in members)]
                by_name = {_safe_name(archive, i.filename): i for i in zf.infolist() if not i.is_dir()}
                for m in members:
                    with zf.open(by_name[m.name]) as src:  # zipfile checks each member's CRC at its end
                        _copy(archive, src, tmp / m.name, m.size, budget)
        else:
            with source.open() as raw, _tar_stream(archive, io.BufferedReader(raw), packed) as stream, \
                    tarfile.open(fileobj=stream, mode="r:") as tf:
                members = _tar_members(archive, tf, max_bytes, packed, stream)
                _check_totals(archive, members, max_bytes, packed)
                budget = [sum(m.size for m in members)]
                for info in tf.getmembers():
                    if info.isfile():
                        with tf.extractfile(info) as src:
                            _copy(archive, src, tmp / _safe_name(archive, info.name), info.size, budget)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveRejected(f"{archive}: damaged archive ({exc})") from None
    written = sum(1 for p in tmp.rglob("*") if p.is_file())
    if written != len(members):
        raise ArchiveRejected(f"{archive}: {written} files unpacked but {len(members)} listed")


def dataset_root(folder: Path) -> Path:
    """An archive holding one top folder (photos/...) imports from inside it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder
