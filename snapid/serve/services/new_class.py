"""A new class from approved "not in the list" feedback, made by the review page (issue 20).

`snapid add-class` edits the ONNX graph with the `onnx` package, which the lean `pip install snapid[serve]`
does not install and which the serving path must not import (the import-linter contract
"serving-without-torch"). So the server runs the command line as a child process, `python -m snapid
add-class --json -- BUNDLE NAME PHOTO...`, on the bundle folder it serves, with the kept photos' own files
(plain JPEGs in the photo store), off the event loop and with a timeout. One runs at a time in this process:
a second request meanwhile is 409 `add_class_running` with Retry-After. add-class writes the new version
atomically in place, so a failure leaves the bundle as it was; on success the used feedback rows record the
class they became, and the server loads the new version at once (its watcher would within
SNAPID_RELOAD_POLL_S; other workers do so through theirs).

A retry after a failure past the bundle write (the database could not record the items) does not make the
class twice, nor is it refused because the name is now taken: a class of that name that add-class made from
exactly these photos is recognised in the bundle's manifest, and only the recording and the loading are done
again. Items a reviewer rejected or relabelled while the class was being made keep the reviewer's word
(`new_class.mark` skips them) and the answer lists them under "skipped".

The child's failure is answered with its own one-line reason: 422 `add_class_refused` for a refusal
(a name already there, a graph without an "embedding" output, an unreadable photo), 501 `add_class_unavailable`
when this install lacks what add-class needs (onnx: `pip install 'snapid[train]'`), 500 `add_class_failed`
for a crash and 504 `add_class_timeout`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from snapid.errors import SnapidError
from snapid.feedback import new_class
from snapid.feedback.service import normalise
from snapid.feedback.storage import PhotoStore
from snapid.serve.services.reloader import Reloader

log = logging.getLogger("snapid.serve")
TIMEOUT_S = 300.0      # embedding 20 photos is seconds on a CPU; the rest is the child's start
RETRY_AFTER_S = 10
MAX_MESSAGE = 2000     # characters of the child's reason passed on
_MISSING = re.compile(r"this command needs (\S+), which")


def clean_name(name: str, labels: list[dict]) -> str:
    """The class name as add-class will store it, or 422 naming what is wrong: empty, too long, control
    characters, or a class the model already has (by id or name, under the label rule's normalisation)."""
    name = valid_name(name)
    wanted = normalise(name)
    if any(wanted in (normalise(str(c.get("id") or "")), normalise(str(c.get("name") or ""))) for c in labels):
        raise SnapidError(f"{name!r}: the model already has a class of that name or id; relabel the feedback "
                          "as that class instead", code="invalid_name", status=422)
    return name


def valid_name(name: str) -> str:
    """The name NFC-normalised with its whitespace collapsed; 422 when empty, too long or not printable."""
    name = " ".join(unicodedata.normalize("NFC", name).split())
    if not name:
        raise SnapidError("the class name is empty", code="invalid_name", status=422)
    if len(name) > new_class.MAX_NAME or not name.isprintable():
        raise SnapidError(f"the class name must be at most {new_class.MAX_NAME} printable characters",
                          code="invalid_name", status=422)
    return name


def made_before(bundle: Path, name: str, photos: list[Path]) -> dict | None:
    """The bundle's manifest (as `snapid add-class --json` prints it) when its last added class is ``name`` made
    from exactly these photos (a retry after the recording failed), else None."""
    try:
        data = (bundle / "manifest.json").read_bytes()
        manifest = json.loads(data)
    except (OSError, ValueError):
        return None
    added = manifest.get("added_classes") or []
    if not added or added[-1].get("name") != name:
        return None
    shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}
    if {f.get("sha256") for f in added[-1].get("photos", [])} != shas:
        return None
    return {"path": str(bundle), "sha256": hashlib.sha256(data).hexdigest(), **manifest}


def _reason(stderr: str) -> tuple[bool, str]:
    """(typed, reason): the command line's own reason (from its line "error: ..." on), else the last line it
    wrote (a crash's exception)."""
    lines = stderr.strip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            return True, "\n".join(lines[i:])[len("error: "):].strip()[:MAX_MESSAGE]
    return False, (lines[-1] if lines else "no output")[:MAX_MESSAGE]


def run_add_class(bundle: Path, name: str, photos: list[Path], *, timeout_s: float = TIMEOUT_S) -> dict:
    """`snapid add-class --json` in a child process; its JSON (the new manifest), or the typed error above."""
    # "--" ends the options: a name such as "-x" stays the class name
    command = [sys.executable, "-m", "snapid", "add-class", "--json", "--", str(bundle), name, *map(str, photos)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                              env={**os.environ, "NO_COLOR": "1"}, check=False)
    except subprocess.TimeoutExpired:
        raise SnapidError(f"snapid add-class did not finish within {timeout_s:g} s; the bundle is unchanged",
                          code="add_class_timeout", status=504) from None
    if done.returncode == 0:
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise SnapidError("snapid add-class printed no JSON", code="add_class_failed", status=500) from None
    typed, reason = _reason(done.stderr)
    if not typed:
        raise SnapidError(f"snapid add-class failed (exit {done.returncode}): {reason}", code="add_class_failed",
                          status=500)
    if _MISSING.search(reason):
        raise SnapidError(f"this server cannot add classes: {reason}", code="add_class_unavailable", status=501)
    raise SnapidError(reason, code="add_class_refused", status=422)


class NewClasses:
    """Makes classes from feedback for the bundle folder this server serves; one at a time."""

    def __init__(self, *, bundle: Path | None, reloader: Reloader | None, watching: bool,
                 engine: Callable[[], Engine], photo_store: Callable[[], PhotoStore]):
        self.bundle, self.reloader, self.watching = bundle, reloader, watching
        self.engine, self.photo_store = engine, photo_store
        self._busy = threading.Lock()  # not an asyncio lock: it must not bind to one event loop

    def check_editable(self) -> Path:
        """The bundle folder, or 409 saying why this server cannot add a class to what it serves."""
        if self.bundle is None or self.reloader is None:
            raise SnapidError("no bundle path is configured; start with snapid serve BUNDLE_FOLDER",
                              code="no_model", status=503)
        if not self.bundle.is_dir():
            raise SnapidError(f"the server serves the packed bundle {self.bundle.name}; add-class edits a bundle "
                              "folder: unpack it and serve the folder", code="bundle_not_editable", status=409)
        if not self.watching:
            raise SnapidError("the server does not watch its bundle (SNAPID_RELOAD_POLL_S=0), so other workers "
                              "would not serve a new class; set it above 0", code="reload_off", status=409)
        return self.bundle

    async def make(self, name: str, feedback_ids: list[str], labels: list[dict]) -> dict:
        bundle = self.check_editable()
        name = valid_name(name)
        if not self._busy.acquire(blocking=False):
            error = SnapidError("another new class is being made; try again shortly", code="add_class_running",
                                status=409)
            error.retry_after = RETRY_AFTER_S
            raise error
        try:
            photos = await asyncio.to_thread(new_class.photos_for, self.engine(), self.photo_store(), feedback_ids)
            manifest = await asyncio.to_thread(made_before, bundle, name, photos)
            if manifest is None:
                clean_name(name, labels)
                manifest = await asyncio.to_thread(run_add_class, bundle, name, photos)
            entry = manifest["added_classes"][-1]
            skipped = await asyncio.to_thread(new_class.mark, self.engine(), feedback_ids, entry["id"])
            served = await self._serve(manifest["version"])
        finally:
            self._busy.release()
        log.info("review: class %r (%s) added from %d photos; bundle version %s", entry["name"], entry["id"],
                 len(photos), manifest["version"])
        return {"class": {"id": entry["id"], "name": entry["name"], "index": entry["index"]},
                "bundle": {"version": manifest["version"], "sha256": manifest["sha256"]},
                "photos": len(photos), "wins_own_photos": entry["wins_own_photos"],
                "feedback_ids": [i for i in dict.fromkeys(i.lower() for i in feedback_ids) if i not in skipped],
                "skipped": skipped, "served": served}

    async def _serve(self, version: str) -> bool:
        """Load the new version now (this worker answers with it at once); False when it was refused."""
        model = self.reloader.predictor.model
        if model is not None and model.info["version"] == version:  # the watcher was quicker
            return True
        try:
            return (await self.reloader.reload()).info["version"] == version
        except SnapidError:  # logged by the reloader; the old model keeps serving
            return False
