"""Archives split into parts, read as one without writing a joined copy (the pill project's unzip pain).

Two kinds are common on dataset hosts (AI-Hub among them):
- byte-split parts, `data.zip.001`, `.002`, … (or `data.tar.gz.001` …), made by `split` or 7-Zip: the parts
  joined are the archive;
- Info-ZIP split archives, `data.z01`, `data.z02`, …, `data.zip`, made by `zip -s`: each part is a "disk", and the
  central directory gives each file's offset within its disk. Joined, the offsets are rewritten to absolute ones
  (in memory: only the central directory is rebuilt), and Python's zipfile reads it like any zip.

Either way the first part is given (or the `.zip`), the others are found beside it, and a missing part is an
error naming it. The result is a read-only, seekable file object for zipfile / tarfile, so unpacking keeps every
check it has for a one-part archive.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path

from snapid.errors import DatasetError

NUMBERED = re.compile(r"^(?P<base>.+)\.(?P<n>\d{3})$")  # data.zip.001
INFOZIP = re.compile(r"^(?P<base>.+)\.z(?P<n>\d{2,})$", re.IGNORECASE)  # data.z01
EOCD = b"PK\x05\x06"
CENTRAL = b"PK\x01\x02"
EOCD_SIZE = 22
MAX_COMMENT = 0xFFFF


@dataclass(frozen=True)
class Parts:
    """An archive in ``paths`` (in order), read as ``name`` (what its suffix says: .zip, .tar.gz ...)."""

    name: str
    paths: tuple[Path, ...]
    infozip: bool = False

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.paths)

    def open(self) -> io.RawIOBase:
        joined = JoinedFile([(p, p.stat().st_size) for p in self.paths])
        return _rebased_zip(joined, self) if self.infozip else joined


def find_parts(path: Path) -> Parts | None:
    """The parts of a split archive that ``path`` starts (or ends, for Info-ZIP's .zip); None when it is not split."""
    numbered = NUMBERED.match(path.name)
    if numbered:
        if numbered["n"] != "001":
            raise DatasetError(f"{path}: part {numbered['n']} of a split archive; give the first part, "
                               f"{numbered['base']}.001")
        paths = [path]
        while (nxt := path.with_name(f"{numbered['base']}.{len(paths) + 1:03d}")).is_file():
            paths.append(nxt)
        later = [p for p in path.parent.glob(f"{glob_escape(numbered['base'])}.[0-9][0-9][0-9]")
                 if int(p.suffix[1:]) > len(paths)]
        if later:
            gap = path.with_name(f"{numbered['base']}.{len(paths) + 1:03d}")
            raise DatasetError(f"{gap}: missing: the parts go on to {max(later).name}")
        return Parts(numbered["base"], tuple(paths))
    infozip = INFOZIP.match(path.name)
    if infozip:
        path = path.with_name(f"{infozip['base']}.zip")
        if not path.is_file():
            raise DatasetError(f"{path}: missing: a split zip's last part is the .zip beside its .z01, .z02 ... parts")
    if (path.suffix.lower() != ".zip"
            or not path.with_suffix(".z01").is_file() and not path.with_suffix(".Z01").is_file()):
        return None
    disks = _disk_count(path)
    paths = []
    for n in range(1, disks):
        part = next((p for p in (path.with_suffix(f".z{n:02d}"), path.with_suffix(f".Z{n:02d}")) if p.is_file()), None)
        if part is None:
            raise DatasetError(f"{path.with_suffix(f'.z{n:02d}')}: missing: this split zip has {disks} parts "
                               f"({path.stem}.z01 … {path.name})")
        paths.append(part)
    return Parts(path.name, (*paths, path), infozip=True)


def _disk_count(last: Path) -> int:
    """Disks of an Info-ZIP split archive: its end record sits on the last disk and gives that disk's number."""
    with open(last, "rb") as fh:
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - EOCD_SIZE - MAX_COMMENT))
        tail = fh.read()
    at = tail.rfind(EOCD)
    if at < 0:
        raise DatasetError(f"{last}: not the last part of a split zip (no end-of-archive record)")
    return struct.unpack_from("<H", tail, at + 4)[0] + 1


class JoinedFile(io.RawIOBase):
    """Segments (a file path, or bytes in memory) read as one file; read-only and seekable."""

    def __init__(self, segments: list[tuple[Path | bytes, int]]):
        super().__init__()
        self.segments, self.position = segments, 0
        self.starts = [0]
        for _, size in segments:
            self.starts.append(self.starts[-1] + size)
        self.handles: dict[int, object] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.starts[-1]}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self.position < self.starts[-1]:
            i = next(k for k in range(len(self.segments)) if self.starts[k + 1] > self.position)
            within = self.position - self.starts[i]
            want = min(len(view) - done, self.starts[i + 1] - self.position)
            chunk = self._read(i, within, want)
            if not chunk:
                raise DatasetError(f"{self.segments[i][0]}: shorter than it was when the import started")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
            self.position += len(chunk)
        return done

    def _read(self, i: int, offset: int, size: int) -> bytes:
        source = self.segments[i][0]
        if isinstance(source, bytes):
            return source[offset:offset + size]
        if i not in self.handles:
            self.handles[i] = open(source, "rb")
        handle = self.handles[i]
        handle.seek(offset)
        return handle.read(size)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()
        super().close()


def _rebased_zip(joined: JoinedFile, parts: Parts) -> JoinedFile:
    """The joined disks with the central directory rewritten: each file's (disk, offset) → an absolute offset,
    the end record → one disk. The disks' bytes are read in place; only the directory is rebuilt, in memory."""
    where = str(parts.paths[-1])
    last_start, total = joined.starts[-2], joined.starts[-1]
    tail_start = max(last_start, total - EOCD_SIZE - MAX_COMMENT)
    joined.seek(tail_start)
    tail = joined.read(total - tail_start)
    at = tail.rfind(EOCD)
    if at < 0:
        raise DatasetError(f"{where}: no end-of-archive record")
    _, disk, cd_disk, _, entries, cd_size, cd_offset, comment_len = struct.unpack_from("<4sHHHHIIH", tail, at)
    if 0xFFFF in (disk, cd_disk, entries) or 0xFFFFFFFF in (cd_size, cd_offset):
        raise DatasetError(f"{where}: a ZIP64 split archive; "
                           f"join it first with `zip -s 0 {parts.name} --out joined.zip`")
    if cd_disk >= len(parts.paths):
        raise DatasetError(f"{where}: the directory is on part {cd_disk + 1} of {len(parts.paths)}")
    absolute_cd = joined.starts[cd_disk] + cd_offset
    joined.seek(absolute_cd)
    directory = bytearray(joined.read(cd_size))
    position = 0
    for _ in range(entries):
        if directory[position:position + 4] != CENTRAL:
            raise DatasetError(f"{where}: damaged central directory")
        name_len, extra_len, note_len, file_disk = struct.unpack_from("<HHHH", directory, position + 28)
        offset = struct.unpack_from("<I", directory, position + 42)[0]
        if file_disk >= len(parts.paths) or offset == 0xFFFFFFFF:
            raise DatasetError(f"{where}: a file on part {file_disk + 1}, which is not there (or ZIP64)")
        struct.pack_into("<H", directory, position + 34, 0)
        struct.pack_into("<I", directory, position + 42, joined.starts[file_disk] + offset)
        position += 46 + name_len + extra_len + note_len
    end = struct.pack("<4sHHHHIIH", EOCD, 0, 0, entries, entries, cd_size, absolute_cd, 0)
    kept, out = absolute_cd, []
    # the disks up to where the directory starts (strict=False: starts ends with the total, which has no segment)
    for (source, size), start in zip(joined.segments, joined.starts, strict=False):
        if start >= kept:
            break
        out.append((source, min(size, kept - start)))
    joined.close()
    return JoinedFile(out + [(bytes(directory) + end, len(directory) + len(end))])
