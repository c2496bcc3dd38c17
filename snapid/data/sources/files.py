"""Reading a dataset's own small files (annotations, manifests, class lists): only regular files inside the root.

A dataset is data from elsewhere: its annotation files may be links to /dev/zero (never ends), to a FIFO (blocks
for ever) or to a file outside the dataset. So a file is read only when

- its real path (every link in it resolved) lies under the dataset root's real path;
- it is a regular file (``os.stat`` → ``S_ISREG``) no larger than the cap;
- and, opened without following a link (``O_NOFOLLOW``) and without blocking (``O_NONBLOCK``), the open file is
  still that regular file; at most cap + 1 bytes are read, so a file that grew since the check is refused too.

Refusals raise ``UnsafeFile`` (an ``AnnotationError``) naming the file and saying why. ``inside_root`` is the
same path rule the importer applies to every image path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from snapid.errors import UnsafeFile

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def inside_root(root: str | Path, path: str | Path) -> str | None:
    """The real path of ``path`` (relative paths are taken under ``root``) when it stays under the real root,
    every link resolved; else None."""
    root_real = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root_real, path))
    return real if real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep) else None


def present(path: Path) -> bool:
    """Whether an annotation file is there to be read: anything but a folder. A FIFO, a device or a dangling link
    under an annotation file's name is then refused by name when read, never passed over in silence."""
    return os.path.lexists(path) and not os.path.isdir(path)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _checked(root: Path, path: Path, limit: int | None) -> tuple[str, os.stat_result]:
    real = inside_root(root, path)
    if real is None:
        raise UnsafeFile(f"{path}: leads outside the dataset folder {root} (a symbolic link); not read")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise UnsafeFile(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{path}: {_kind(st.st_mode)}, not a regular file; not read")
    if limit is not None and st.st_size > limit:
        raise UnsafeFile(f"{path}: annotation file is {st.st_size} bytes, more than the {limit} allowed")
    return real, st


def open_sidecar(root: Path, path: Path, limit: int | None):
    """A binary file object for ``path`` after the checks above (``limit`` None: any size, for a partial read)."""
    real, st = _checked(Path(root), Path(path), limit)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnsafeFile(f"{path}: cannot be read ({exc.strerror or exc})") from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{path}: changed while it was being opened; not read")
    return os.fdopen(fd, "rb")


def read_sidecar(root: Path, path: Path, limit: int) -> bytes:
    """All of ``path``'s bytes: a regular file inside ``root`` of at most ``limit`` bytes."""
    with open_sidecar(root, path, limit) as fh:
        expected = min(os.fstat(fh.fileno()).st_size, limit)
        data = fh.read(expected + 1)   # never more than the cap (+1 to see a file that grew), whatever the file does
    if len(data) > limit:
        raise UnsafeFile(f"{path}: annotation file is more than the {limit} bytes allowed")
    if len(data) > expected:
        raise UnsafeFile(f"{path}: grew while it was being read; not read")
    return data


def peek_sidecar(root: Path, path: Path, size: int) -> bytes:
    """The first ``size`` bytes of ``path`` (a regular file inside ``root``, of any size)."""
    with open_sidecar(root, path, None) as fh:
        return fh.read(size)
