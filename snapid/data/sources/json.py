"""JSON manifest: a list of objects with the CSV's keys (path, label, split, group, x1 y1 x2 y2).

Also ``{"samples": [...], "classes": [...]}`` (classes: id/name/display_names, or plain names)
and JSON Lines (.jsonl), one object per line. An object may carry ``"boxes": [[x1, y1, x2, y2,
label?], ...]`` instead of one object per box. Image paths are relative to the file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snapid.data.manifest import ClassInfo
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import EntryMerger, load_json, load_jsonl
from snapid.data.sources.csv import ALIASES, BOX_KEYS, add_record, check_mapping, find_key
from snapid.errors import AnnotationError, DatasetError


def _text(value: Any) -> str:
    """JSON scalars as the strings the CSV reader would see; ids like "0012" are kept as given."""
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def load_records(file: Path) -> tuple[list[tuple[str, Any]], Any]:
    """(where, object) pairs and the raw "classes" value (or None)."""
    if file.suffix.lower() == ".jsonl":
        return [(f"{file.name}:{line}", obj) for line, obj in load_jsonl(file.parent, file)], None
    data = load_json(file.parent, file)
    classes = None
    if isinstance(data, dict):
        if not isinstance(data.get("samples"), list):
            raise AnnotationError(f"{file}: expected a list of objects or {{\"samples\": [...]}}; "
                                  f"keys found: {', '.join(map(str, data)) or 'none'}")
        data, classes = data["samples"], data.get("classes")
    if not isinstance(data, list):
        raise AnnotationError(f"{file}: expected a list of objects, found {type(data).__name__}")
    return [(f"{file.name}[{i}]", obj) for i, obj in enumerate(data)], classes


def resolve_keys(file: Path, records: list[tuple[str, Any]], columns: dict) -> dict[str, str]:
    check_mapping(columns)
    if any(isinstance(v, int) or str(v).strip().isdigit() for v in columns.values()):
        raise DatasetError(f"{file}: column indexes only apply to CSV files; map JSON keys by name")
    seen: dict[str, None] = {}
    for where, obj in records:
        if not isinstance(obj, dict):
            raise AnnotationError(f"{where}: expected an object, found {type(obj).__name__}")
        seen.update(dict.fromkeys(obj))
    keys = {k: find_key(list(seen), k, columns) for k in ALIASES}
    for key in ALIASES:
        required = key in ("path", "label") and keys[key] is None
        if required or (key in columns and keys[key] not in seen):
            raise AnnotationError(f"{file}: no {key} key (looked for {keys[key] or ', '.join(ALIASES[key])}); "
                                  f"keys found: {', '.join(map(str, seen)) or 'none'}")
    return {k: v for k, v in keys.items() if v is not None}


def box_cells(box: Any, label: str, where: str) -> dict[str, str]:
    if isinstance(box, dict):
        cells = {k: _text(box.get(k)) for k in BOX_KEYS}
        return cells | {"label": _text(box.get("label")) or label}
    if isinstance(box, list) and len(box) in (4, 5):
        cells = dict(zip(BOX_KEYS, map(_text, box[:4]), strict=True))
        return cells | {"label": _text(box[4]) if len(box) == 5 and box[4] is not None else label}
    raise AnnotationError(f"{where}: a box must be [x1, y1, x2, y2, label?] or an object, got {box!r}")


def parse_classes(file: Path, raw: Any) -> list[ClassInfo] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise AnnotationError(f"{file}: \"classes\" must be a list")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, dict) and _text(item.get("id", item.get("name"))):
            cid = _text(item.get("id", item.get("name")))
            names = item.get("display_names") or {}
            out.append(ClassInfo(cid, _text(item.get("name")) or cid, {str(k): str(v) for k, v in names.items()}))
        elif isinstance(item, (str, int)) and _text(item):
            out.append(ClassInfo(_text(item), _text(item)))
        else:
            raise AnnotationError(f"{file}: classes[{i}] needs an id or a name, got {item!r}")
    return out


def read(path: Path, options: ReadOptions) -> Source:
    if path.is_dir():
        raise DatasetError(f"{path}: the json format needs the JSON file itself")
    root = path.parent
    records, raw_classes = load_records(path)
    keys = resolve_keys(path, records, options.columns)
    merger = EntryMerger()
    for where, obj in records:
        cells = {k: _text(obj.get(name)) for k, name in keys.items()}
        boxes = obj.get("boxes")
        if isinstance(boxes, list) and boxes:
            for box in boxes:
                add_record(merger, root, cells | box_cells(box, cells.get("label", ""), where), where)
        else:
            add_record(merger, root, cells, where)
    return Source("json", root, merger.result(), parse_classes(path, raw_classes))
