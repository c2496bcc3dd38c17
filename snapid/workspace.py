"""Where things live inside SNAPID_HOME. Nothing else builds workspace paths by hand.

The workspace folder is made readable by its owner only (0700): it holds the database, kept photos
and the session secret. Those are private themselves too (files 0600, folders 0700), so they stay
private in a workspace folder that existed before, with looser permissions."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    home: Path

    @classmethod
    def at(cls, home: Path | str) -> Workspace:
        path = Path(home).expanduser().resolve()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # an existing folder keeps its mode
        return cls(path)

    @property
    def database(self) -> Path:
        return self.home / "snapid.db"

    @property
    def cache_root(self) -> Path:
        return self.home / "cache"

    def cache_dir(self, params: dict) -> Path:
        """Prepared shards for one set of transform parameters (shared by every dataset)."""
        return self.cache_root / params_key(params)

    @property
    def unpacked(self) -> Path:
        """Where dataset archives are unpacked."""
        return self.home / "datasets"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def demo_data(self) -> Path:
        return self.home / "demo-data"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def bundles(self) -> Path:
        """Exported model bundles (`snapid export` writes here unless told --out)."""
        return self.home / "bundles"

    @property
    def uploads(self) -> Path:
        """Photos received by the server, stored by opaque id."""
        return self.home / "uploads"


def params_key(params: dict) -> str:
    """A short stable key for a dict of parameters."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 (and its folder with 0700) unless it exists: for a file only
    its owner may read, such as the SQLite database (SQLite gives its -wal and -shm files its mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path


def atomic_write_bytes(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write to a temporary file beside ``path``, fsync, then os.replace: never half-written.
    ``private``: the file gets mode 0600 and a folder made for it 0700 (else the umask's usual modes)."""
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600 if private else 0o666 & ~_UMASK)  # mkstemp makes 0600; else normal permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1))


@contextmanager
def exclusive_lock(lock_file: Path):
    """An advisory lock on ``lock_file`` (created if missing), held for the block and released when the process
    ends (even by kill -9): two processes editing one thing take turns. Not POSIX: no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
