"""AI-Hub style: one COCO-like JSON per image (or per object), anywhere under the root.

Each JSON holds {"images": [{"file_name": ...}], "annotations": [{"bbox": [x, y, w, h],
"category_id": ...}], "categories": [{"id", "name"}]} ("bbox_format": "xyxy" for corner boxes).
The image is found beside the JSON, else anywhere under the root by its basename. Several JSONs
for one image (the AI-Hub pill set writes one per pill) merge into one Entry.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from snapid.data.manifest import Box, ClassInfo, Entry
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import (
    MAX_SIDECAR_BYTES,
    ImageIndex,
    count_note,
    is_image,
    load_json,
    require_dir,
    single_label,
    split_of,
    walk_files,
)
from snapid.errors import AnnotationError, DatasetError


def is_aihub(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)


def to_box(ann: Any, xyxy: bool, where: str) -> Box:
    bbox = ann.get("bbox") if isinstance(ann, dict) else None
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise AnnotationError(f"{where}: bbox must be four numbers, got {bbox!r}")
    if ann.get("category_id") is None:
        raise AnnotationError(f"{where}: no category_id")
    x, y, a, b = (float(v) for v in bbox)
    label = str(ann["category_id"])
    return Box(x, y, a, b, label) if xyxy else Box(x, y, x + a, y + b, label)


def locate(rel: str, file_name: str, present: set[str], index: ImageIndex) -> str | None:
    """The image beside the JSON, else the one file anywhere with that basename."""
    beside = posixpath.normpath(posixpath.join(posixpath.dirname(rel), file_name.replace("\\", "/")))
    return beside if beside in present else index.find_name(file_name, rel)


def boxes_for(data: dict, image: dict, rel: str) -> list[Box]:
    """Annotations of one image: all of them when the JSON has one image, else by image_id."""
    xyxy = str(data.get("bbox_format", "")).lower() == "xyxy"
    single = len(data["images"]) == 1
    return [to_box(ann, xyxy, f"{rel}: annotations[{i}]") for i, ann in enumerate(data["annotations"])
            if single or (isinstance(ann, dict) and ann.get("image_id") == image.get("id"))]


def add_categories(data: dict, classes: dict[str, ClassInfo]) -> None:
    for cat in data.get("categories") or []:
        if isinstance(cat, dict) and cat.get("id") is not None:
            cid = str(cat["id"])
            classes.setdefault(cid, ClassInfo(cid, str(cat.get("name") or cid)))   # repeated: keep first


def read(path: Path, options: ReadOptions) -> Source:
    require_dir(path, "aihub")
    files = list(walk_files(path))
    present, index = set(files), ImageIndex(files)
    entries: dict[str, Entry] = {}
    classes: dict[str, ClassInfo] = {}
    skipped, missing = [], []
    for rel in files:
        if not rel.lower().endswith(".json"):
            continue
        data = load_json(path, path / rel, MAX_SIDECAR_BYTES)
        if not is_aihub(data):
            skipped.append(rel)
            continue
        add_categories(data, classes)
        for i, image in enumerate(data["images"]):
            name = image.get("file_name") if isinstance(image, dict) else None
            if not name:
                raise AnnotationError(f"{rel}: images[{i}] has no file_name")
            found = locate(rel, str(name), present, index)
            if found is None:
                missing.append(f"{name} ({rel})")
                continue
            entry = entries.setdefault(found, Entry(found, None, split_of(found) or split_of(rel), where=rel))
            entry.boxes += boxes_for(data, image, rel)
    if not entries:
        raise DatasetError(f"{path}: no per-image JSON with images and annotations whose image file exists")
    for entry in entries.values():
        entry.label = single_label(entry.boxes)
    for label in sorted({b.label for e in entries.values() for b in e.boxes} - set(classes)):
        classes[label] = ClassInfo(label, label)
    notes = count_note(missing, "images named in a JSON but not found, skipped")
    notes += count_note(skipped, "JSON files without images/annotations ignored")
    notes += count_note([f for f in files if is_image(f) and f not in entries], "images without a JSON skipped")
    return Source("aihub", path, sorted(entries.values(), key=lambda e: e.path), list(classes.values()), notes)
