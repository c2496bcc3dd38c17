"""Hot swap: load a new bundle when its folder changes, or when an admin asks.

The watcher compares a cheap signature (name, size, mtime and inode of every file in the bundle
folder, or of the .snapid file) every ``poll_s`` seconds. A change triggers a full load: every
sha256, the ONNX graph and a test batch (`load_model`). Only a model that passes replaces the served
one, in one reference assignment; a bundle that fails is refused, logged, and the old model keeps
serving. The same signature is not retried until something in the folder changes again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from snapid.errors import SnapidError
from snapid.serve.services.memory import release_soon
from snapid.serve.services.model import LoadedModel, load_model
from snapid.serve.services.predictor import Predictor

log = logging.getLogger("snapid.serve")


def signature(path: Path) -> tuple | None:
    """What changes when a bundle is replaced or edited; None while it is absent (mid-swap)."""
    try:
        if path.is_file():
            st = path.stat()
            return ((path.name, st.st_size, st.st_mtime_ns, st.st_ino),)
        entries = []
        with os.scandir(path) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                entries.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(sorted(entries)) or None
    except OSError:
        return None


class Reloader:
    def __init__(self, predictor: Predictor, path: Path, *, threads: int = 0, poll_s: float = 1.0):
        self.predictor, self.path, self.threads, self.poll_s = predictor, Path(path), threads, poll_s
        self._lock = asyncio.Lock()
        self._seen: tuple | None = None
        self.last_error: str | None = None       # the refusal, for the log and the admin (it names server paths)
        self.last_error_code: str | None = None  # its code, which readiness shows to anyone

    async def reload(self) -> LoadedModel:
        """Load and verify the bundle, then swap it in; raises (and keeps the old model) if it fails."""
        async with self._lock:
            seen = signature(self.path)
            try:
                model = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: load_model(self.path, threads=self.threads))
            except Exception as exc:  # a typed refusal, or a bundle malformed in a way nobody foresaw
                message = exc.message if isinstance(exc, SnapidError) else f"{type(exc).__name__}: {exc}"
                self._seen, self.last_error = seen, message
                self.last_error_code = exc.code if isinstance(exc, SnapidError) else "bad_bundle"
                current = self.predictor.model
                log.error("bundle refused: %s; %s", message,
                          f"still serving {current.info['name']} version {current.info['version']}" if current
                          else "no model is served (readiness 503)")
                if isinstance(exc, SnapidError):
                    raise
                raise SnapidError(f"bundle refused: {message}", code="bad_bundle", status=422) from exc
            self._seen, self.last_error, self.last_error_code = seen, None, None
            replaced = self.predictor.model is not None
            self.predictor.swap(model)
            if replaced:
                release_soon()  # the old session's memory, once its last batch is done
            return model

    async def load_initial(self) -> None:
        """The first load at startup: a failure is logged and leaves readiness at 503."""
        self._lock = asyncio.Lock()  # one per lifespan: a restarted app may run on another event loop
        try:
            await self.reload()
        except SnapidError:
            pass

    async def watch(self) -> None:
        if self.poll_s <= 0:
            return
        while True:
            await asyncio.sleep(self.poll_s)
            current = signature(self.path)
            if current is None or current == self._seen or self._lock.locked():
                continue
            log.info("bundle %s changed; loading it", self.path)
            try:
                await self.reload()
            except Exception:  # logged in reload(); the old model keeps serving and the watch goes on
                pass
