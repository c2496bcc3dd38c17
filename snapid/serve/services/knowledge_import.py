"""POST /api/v1/admin/knowledge's work: an uploaded knowledge file imported for the served model's dataset
(issue 21), through the library function `snapid knowledge import` uses (snapid.knowledge.store), so the same
checks hold: a bad file is refused whole (422 knowledge_error naming the file, line and column) and nothing is
stored. The upload is written to a private temporary folder under its own base name (its suffix says CSV or
YAML) and removed after; messages name the file as it was sent, never the temporary path. After an import the
watcher is asked to look at once, so this process answers with the new version; others see it at their next
poll (SNAPID_KNOWLEDGE_POLL_S).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from snapid.errors import SnapidError
from snapid.knowledge import KnowledgeError
from snapid.knowledge.store import ImportResult, import_file
from snapid.serve.services.knowledge import LiveKnowledge, dataset_of
from snapid.serve.services.model import LoadedModel

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stored_name(sent: str, kind: str) -> str:
    """A safe base name for the upload: its last path part, odd characters as '_'; '<kind>.csv' when none."""
    base = _UNSAFE.sub("_", re.split(r"[\\/]", sent or "")[-1]).strip("._")[:100]
    return base or f"{kind}.csv"


def _import(name: str, data: bytes, *, kind: str, dataset: str, engine, table: str | None,
            allow_unknown: bool) -> ImportResult:
    with tempfile.TemporaryDirectory(prefix="snapid-knowledge-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            return import_file(path, kind=kind, dataset=dataset, engine=engine, table=table,
                               allow_unknown=allow_unknown)
        except KnowledgeError as exc:  # name the file as sent, not where it was written
            raise KnowledgeError(exc.message.replace(str(path), name).replace(folder, "")) from None


async def import_upload(name: str, data: bytes, *, kind: str, table: str | None, allow_unknown: bool,
                        model: LoadedModel, engine: Callable, live: LiveKnowledge) -> tuple[ImportResult, bool]:
    """Import ``data`` (sent as ``name``) for ``model``'s dataset; (the result, whether this process now answers
    with it). ``engine`` opens the database when called (on the worker thread, with the import)."""
    dataset = dataset_of(model)
    if not dataset:
        raise SnapidError("the served bundle names no dataset, so its knowledge cannot be imported here; use "
                          "`snapid knowledge import --dataset NAME`", code="no_dataset", status=409)
    stored = stored_name(name, kind)
    result = await asyncio.get_running_loop().run_in_executor(
        None, lambda: _import(stored, data, kind=kind, dataset=dataset, engine=engine(), table=table,
                              allow_unknown=allow_unknown))
    serving = False
    if live.poll_s > 0:  # 0: this server answers from the bundle's knowledge.json only
        installed = await live.refresh()
        serving = installed is not None and installed.source == "database" and installed.version == result.version
    return result, serving
