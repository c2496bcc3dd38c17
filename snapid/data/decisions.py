"""A reviewer's decisions on suspected label issues (`snapid data relabel DATASET DECISIONS.csv`), read and
applied to a manifest. Pure: no database; snapid/relabel.py stores the result as a new dataset version.

The file is a CSV with a header row; columns in any order, other columns ignored (a spreadsheet's notes):
  path    the sample's path as the dataset stores it (as `snapid data issues` prints it)       required
  action  relabel, drop or keep (keep: reviewed and correct, nothing changes)                  required
  label   the new class id, for relabel (one of the dataset's classes)
  given   the label the reviewer saw; when given, it must still be the sample's label (a stale file is refused)
  box     a box index: the decision applies to that box only (datasets trained on box crops)
  reason  why, recorded in the new version (default: "review")

The whole file is checked before anything is applied: any bad row refuses it all, naming the file, the
row (the header is row 1, as a spreadsheet counts) and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from snapid.data.manifest import Manifest, Rejected, Sample
from snapid.errors import DatasetError

ACTIONS = ("relabel", "drop", "keep")
COLUMNS = ("path", "action", "label", "given", "box", "reason")
REQUIRED = ("path", "action")
MAX_BYTES = 64 << 20
DROP_REASON = "dropped_by_review"  # the Rejected reason code of a dropped photo


@dataclass(frozen=True)
class Decision:
    row: int               # the file's row number (header = 1)
    path: str
    action: str
    label: str | None = None
    given: str | None = None
    box: int | None = None
    reason: str = "review"


@dataclass
class Applied:
    """What a decisions file makes of a manifest: the next version's samples and rejected records, and a
    change log (one entry per relabel or drop, with its reason)."""

    samples: list[Sample]
    rejected: list[Rejected]
    changes: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    sha256: str = ""


def _fail(path: Path, row: int, column: str | None, message: str) -> DatasetError:
    where = f"{path}: row {row}" + (f", column {column!r}" if column else "")
    return DatasetError(f"{where}: {message}", code="bad_decisions", status=422)


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict]], str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the decisions file ({exc.strerror or exc})", code="bad_decisions",
                           status=422) from None
    if len(data) > MAX_BYTES:
        raise DatasetError(f"{path}: {len(data)} bytes, more than a decisions file may hold ({MAX_BYTES})",
                           code="bad_decisions", status=413)
    try:
        text = data.decode("utf-8-sig")  # spreadsheets write a byte-order mark
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start})", code="bad_decisions", status=422) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        rows = []
        for line, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise _fail(path, line, None,
                            "more values than the header has columns (a comma inside a value needs quotes)")
            rows.append((line, dict(zip(header, (v.strip() for v in values), strict=False))))
    except csv.Error as exc:
        raise _fail(path, line + 1, None, f"not valid CSV ({exc})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise _fail(path, 1, missing[0], f"the header has no {missing[0]!r} column (expected {', '.join(COLUMNS)}; "
                    "`snapid data issues` writes such rows)")
    return header, rows, hashlib.sha256(data).hexdigest()


def read_decisions(path: Path, manifest: Manifest) -> tuple[list[Decision], str]:
    """(decisions, the file's sha256), every row checked against ``manifest``; DatasetError on the first bad row."""
    path = Path(path)
    _, rows, digest = _rows(path)
    samples = {s.path: s for s in manifest.samples}
    classes = {c.id for c in manifest.classes}
    seen: dict[tuple[str, int | None], int] = {}
    out = []
    for line, row in rows:
        action = (row.get("action") or "").lower()
        sample_path = row.get("path") or ""
        if not sample_path:
            raise _fail(path, line, "path", "empty")
        sample = samples.get(sample_path)
        if sample is None:
            raise _fail(path, line, "path", f"{sample_path!r} is not a photo of {manifest.name} v{manifest.version}")
        if action not in ACTIONS:
            raise _fail(path, line, "action", f"{row.get('action')!r}: expected one of {', '.join(ACTIONS)}")
        box = None
        if row.get("box"):
            try:
                box = int(row["box"])
            except ValueError:
                raise _fail(path, line, "box", f"{row['box']!r} is not a box index") from None
            if not 0 <= box < len(sample.boxes):
                raise _fail(path, line, "box", f"{sample_path} has {len(sample.boxes)} boxes; no box {box}")
        current = sample.label if box is None else (sample.boxes[box].label or sample.label)
        given = row.get("given") or None
        if given is not None and given != current:
            raise _fail(path, line, "given", f"{sample_path} is labelled {current!r} now, not {given!r} "
                        "(decisions made on another version? run `snapid data issues` again)")
        label = row.get("label") or None
        if action == "relabel":
            if label is None:
                raise _fail(path, line, "label", "relabel needs the new label")
            if label not in classes:
                raise _fail(path, line, "label", f"{label!r} is not a class of {manifest.name} "
                            f"({len(classes)} classes, e.g. {', '.join(sorted(classes)[:5])})")
        key = (sample_path, box)
        if key in seen:
            raise _fail(path, line, "path", f"{sample_path}" + (f" box {box}" if box is not None else "")
                        + f" already has a decision on row {seen[key]}")
        seen[key] = line
        out.append(Decision(row=line, path=sample_path, action=action, label=label if action == "relabel" else None,
                            given=given, box=box, reason=row.get("reason") or "review"))
    dropped = {d.path for d in out if d.action == "drop" and d.box is None}
    for d in out:
        if d.action != "keep" and d.path in dropped and (d.box is not None or d.action != "drop"):
            raise _fail(path, d.row, "action", f"{d.path} is dropped on another row; one decision per photo")
    return out, digest


def apply_decisions(manifest: Manifest, decisions: list[Decision], *, source: str = "decisions") -> Applied:
    """The next version's samples and rejected records (the manifest itself is left as it was)."""
    by_path: dict[str, list[Decision]] = {}
    for d in decisions:
        by_path.setdefault(d.path, []).append(d)
    samples, rejected, changes = [], list(manifest.rejected), []
    counts = {"relabelled": 0, "dropped": 0, "kept": 0, "unchanged": 0}
    for sample in manifest.samples:
        todo = by_path.get(sample.path, [])
        if any(d.action == "drop" and d.box is None for d in todo):
            d = next(d for d in todo if d.action == "drop")
            rejected.append(Rejected(path=sample.path, reason=DROP_REASON,
                                     detail=f"{d.reason} ({source} row {d.row}; was {sample.label}, {sample.split})"))
            changes.append({"path": sample.path, "box": None, "action": "drop", "from": sample.label, "to": None,
                            "split": sample.split, "reason": d.reason, "row": d.row})
            counts["dropped"] += 1
            continue
        if todo:
            sample = dataclasses.replace(sample, boxes=list(sample.boxes), box_notes=list(sample.box_notes))
        gone: set[int] = set()
        for d in todo:
            if d.action == "keep":
                counts["kept"] += 1
                continue
            old = sample.label if d.box is None else (sample.boxes[d.box].label or sample.label)
            if d.action == "drop":  # one box
                gone.add(d.box)
                changes.append({"path": sample.path, "box": d.box, "action": "drop", "from": old, "to": None,
                                "split": sample.split, "reason": d.reason, "row": d.row})
                counts["dropped"] += 1
                continue
            if d.label == old:
                counts["unchanged"] += 1
                continue
            if d.box is None:
                # boxes labelled as the photo follow it (unlabelled ones take the photo's label anyway);
                # boxes of other classes keep theirs
                sample.boxes = [dataclasses.replace(b, label=d.label) if b.label == old else b for b in sample.boxes]
                sample.label = d.label
            else:
                sample.boxes[d.box] = dataclasses.replace(sample.boxes[d.box], label=d.label)
            changes.append({"path": sample.path, "box": d.box, "action": "relabel", "from": old, "to": d.label,
                            "split": sample.split, "reason": d.reason, "row": d.row})
            counts["relabelled"] += 1
        if gone:
            sample.boxes = [b for k, b in enumerate(sample.boxes) if k not in gone]
            sample.box_notes = sample.box_notes + [f"box {k} dropped by review" for k in sorted(gone)]
        samples.append(sample)
    return Applied(samples=samples, rejected=rejected, changes=changes, counts=counts)


def decision_row(path: str, action: str, *, label: str | None = None, given: str | None = None, box: int | None = None,
                 reason: str = "") -> list[str]:
    """One row of a decisions file, in COLUMNS order (what the issues report copies to the clipboard)."""
    return [path, action, label or "", given or "", "" if box is None else str(box), reason]

