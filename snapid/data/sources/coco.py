"""COCO detection JSON: {"images": [...], "annotations": [...], "categories": [...]}.

PATH is the JSON file, or a folder holding one (in the folder, in annotations/, or one per split
folder as Roboflow exports: train/_annotations.coco.json, valid/...). Images are looked for beside
the JSON, in an images/ folder beside it, or beside/in images/ of its parent; ``file_name`` may hold
subfolders. Boxes [x, y, w, h] become pixel Box(x, y, x+w, y+h, label=str(category_id)).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from snapid.data.manifest import Box, ClassInfo, Entry
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import count_note, load_json, rel_path, single_label, split_name
from snapid.data.sources.files import open_sidecar
from snapid.errors import AnnotationError, DatasetError, UnsafeFile

COCO_KEYS = ("images", "annotations", "categories")
_SMALL_JSON = 32 << 20
_PROBE = 20


def has_keys(root: Path, file: Path, keys: tuple[str, ...] = COCO_KEYS) -> bool:
    """Whether a JSON file has these top-level keys, without loading a huge one (COCO puts
    "categories" after hundreds of MB of annotations, so a big file is scanned for the key names).
    A file that may not be read (a link out of ``root``, a FIFO, a device) is refused, not passed over."""
    try:
        if file.stat().st_size <= _SMALL_JSON:
            data = load_json(root, file, _SMALL_JSON)
            return isinstance(data, dict) and all(k in data for k in keys)
        wanted = {f'"{k}"'.encode() for k in keys}
        tail = b""
        with open_sidecar(root, file, None) as fh:
            while wanted and (chunk := fh.read(1 << 20)):
                window = tail + chunk
                wanted = {w for w in wanted if w not in window}
                tail = window[-32:]
        return not wanted
    except UnsafeFile:
        raise
    except (OSError, AnnotationError):
        return False


def split_for(file: Path) -> str | None:
    """train/val/test from the file name (instances_val2017.json) or its folder (valid/)."""
    for token in re.split(r"[^a-z]+", file.stem.lower()):
        if split_name(token):
            return split_name(token)
    return split_name(file.parent.name)


def find_jsons(folder: Path) -> list[Path]:
    places = [folder, folder / "annotations"]
    places += [p for p in sorted(folder.iterdir()) if p.is_dir() and split_name(p.name)]
    found = []
    for place in places:
        if place.is_dir():
            found += [p for p in sorted(place.glob("*.json")) if has_keys(folder, p)]
    return found


def choose_jsons(folder: Path) -> list[tuple[Path, str | None]]:
    """One COCO JSON, or one per distinct split; anything else is ambiguous."""
    found = find_jsons(folder)
    if not found:
        raise DatasetError(f"{folder}: no COCO JSON (with images, annotations, categories) in the folder, "
                           "annotations/ or a split folder")
    if len(found) == 1:
        return [(found[0], split_for(found[0]))]
    splits = [split_for(p) for p in found]
    if None in splits or len(set(splits)) != len(splits):
        raise DatasetError(f"{folder}: several COCO JSON files ({', '.join(rel_path(folder, p) for p in found)}); "
                           "give one file")
    return list(zip(found, splits, strict=True))


def base_candidates(json_file: Path, root: Path | None) -> list[Path]:
    here, parent = json_file.parent, json_file.parent.parent
    named = json_file.stem.split("_")[-1]   # instances_train2017.json → train2017/
    dirs = [here, here / "images", parent, parent / "images", parent / named, parent / "images" / named]
    if root is not None:   # a folder was given: never look outside it
        dirs = [d for d in dirs if d == root or root in d.parents]
    return list(dict.fromkeys(dirs))


def pick_base(json_file: Path, names: list[str], root: Path | None) -> Path | None:
    """The folder where the most of the first images' file_names exist (None: found nowhere)."""
    probe = names[:_PROBE]
    scored = [(sum((d / n).is_file() for n in probe), -i, d) for i, d in enumerate(base_candidates(json_file, root))]
    best = max(scored, default=(0, 0, None))
    return best[2] if best[0] else None


def _boxes(file: Path, data: dict, cats: dict[str, str], image_ids: set) -> tuple[dict[Any, list[Box]], int]:
    boxes: dict[Any, list[Box]] = {}
    crowd = 0
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise AnnotationError(f"{file}: annotations[{i}] is not an object")
        where = f"{file}: annotations[{i}] (id {ann.get('id')})"
        if ann.get("image_id") not in image_ids:
            raise AnnotationError(f"{where}: no image with image_id {ann.get('image_id')!r}")
        if ann.get("iscrowd"):
            crowd += 1   # crowd regions are not single objects
            continue
        label = str(ann.get("category_id"))
        if label not in cats:
            raise AnnotationError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise AnnotationError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        boxes.setdefault(ann["image_id"], []).append(Box(x, y, x + w, y + h, label))
    return boxes, crowd


def parse(root: Path, file: Path) -> dict:
    data = load_json(root, file)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in COCO_KEYS):
        raise AnnotationError(f"{file}: not a COCO file (needs lists images, annotations, categories)")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise AnnotationError(f"{file}: images[{i}] needs an id and a file_name")
    return data


def read_one(file: Path, split: str | None,
             folder: Path | None) -> tuple[list[Entry], list[ClassInfo], list[str], Path]:
    data = parse(folder or file.parent, file)
    classes = [ClassInfo(str(c.get("id")), str(c.get("name") or c.get("id"))) for c in data["categories"]
               if isinstance(c, dict)]
    cats = {c.id: c.name for c in classes}
    images = data["images"]
    boxes, crowd = _boxes(file, data, cats, {img["id"] for img in images})
    names = [str(img["file_name"]).replace("\\", "/") for img in images]
    base = pick_base(file, names, folder)
    notes = [] if base else [f"{file.name}: none of the first images found beside it or in images/"]
    base = base or file.parent
    root = folder or Path(os.path.commonpath([file.parent, base]))
    prefix = rel_path(root, base)
    entries = []
    for img, name in zip(images, names, strict=True):
        rel = name if prefix == "." else f"{prefix}/{name}"
        found = boxes.get(img["id"], [])
        entries.append(Entry(rel_path(root, rel), single_label(found), split, found,
                             where=f"{file.name}: image {img['id']}"))
    notes += [f"{file.name}: {crowd} crowd boxes skipped"] if crowd else []
    return entries, classes, notes, root


def read(path: Path, options: ReadOptions) -> Source:
    folder = path if path.is_dir() else None
    jsons = choose_jsons(path) if folder else [(path, split_for(path))]
    entries, classes, notes, root = [], {}, [], path
    for file, split in jsons:
        part, cls, part_notes, root = read_one(file, split, folder)
        entries += part
        notes += part_notes
        for c in cls:
            classes.setdefault(c.id, c)   # the same category in several split files: keep the first
    empty = [e.path for e in entries if not e.boxes]
    notes += count_note(empty, "images without boxes (kept, unlabelled)")
    return Source("coco", root, entries, list(classes.values()), notes)
