"""`snapid data relabel DATASET DECISIONS.csv`: a reviewer's accepted decisions (relabel, drop) become a new
version of the dataset. The old version stays exactly as it was (versions are never rewritten), so runs
trained on it still name what they saw.

What changed and why is kept in the database: each dropped photo is a rejected record of the new version
(reason ``dropped_by_review``, detail: the reviewer's reason, the file's row, the old label and split),
and the version's params hold the change log (``relabel``: the file, its sha256, counts and one entry per
relabel or drop) with a one-line note. Like `merge-feedback`, this is a stage over data (the pure
checks, snapid.data.decisions) and track (the database), not part of either.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from snapid.data.decisions import apply_decisions, read_decisions
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction


def relabel(dataset: str, decisions: Path, *, engine: Engine) -> dict:
    """Apply DECISIONS to the latest version of ``dataset``: {dataset, from_version, version (None when nothing
    changes), relabelled, dropped, kept, unchanged, changes}. A bad file (any row) is refused whole and nothing
    is written; the new version is saved in one transaction."""
    decisions = Path(decisions)
    with transaction(engine) as s:  # one transaction: read the latest version, write the next
        manifest = dataset_store.load_manifest(s, name=dataset)
        rows, digest = read_decisions(decisions, manifest)
        applied = apply_decisions(manifest, rows, source=decisions.name)
        version = None
        if applied.changes:
            counts = applied.counts
            note = (f"relabel from {decisions.name}: {counts['relabelled']} relabelled, {counts['dropped']} dropped "
                    f"(from version {manifest.version})")
            log = {"file": decisions.name, "sha256": digest, "from_version": manifest.version, **counts,
                   "changes": applied.changes}
            version = dataset_store.save_dataset_version(
                s, name=dataset, format=manifest.format, root=manifest.root, classes=manifest.classes,
                samples=applied.samples, rejected=applied.rejected,
                params={**manifest.params, "from_version": manifest.version, "relabel": log},
                notes=manifest.notes + [note])
    return {"dataset": dataset, "from_version": manifest.version, "version": version, **applied.counts,
            "changes": applied.changes}
