"""YOLO txt: images/ and labels/ (optionally per split: images/train or train/images), one
``cls cx cy w h`` line per box in normalised centre coordinates (a polygon line from a segmentation
export becomes its bounding box). Class names from data.yaml/dataset.yaml or classes.txt/*.names.

ClassInfo.id is the class index as a string and its name the names-file entry, so a renamed class
keeps its id. PATH may also be the data.yaml itself.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import yaml

from snapid.data.manifest import Box, ClassInfo, Entry
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import count_note, is_image, read_text, single_label, split_of, walk_files
from snapid.data.sources.files import present
from snapid.errors import AnnotationError, DatasetError

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
LIST_NAMES = ("classes.txt", "obj.names")


def names_from_yaml(root: Path, file: Path) -> dict[int, str] | None:
    try:
        data = yaml.safe_load(read_text(root, file))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AnnotationError(f"{file}:{mark.line + 1 if mark else '?'}: invalid YAML") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}
        except (TypeError, ValueError):
            raise AnnotationError(f"{file}: names keys must be class indexes, got {list(names)[:5]}") from None
    return None


def find_names(root: Path, given: Path | None) -> tuple[dict[int, str] | None, Path | None]:
    """Class names and the file they came from: the given YAML, a data YAML, or a one-per-line list."""
    yamls = [given] if given else [root / n for n in YAML_NAMES if present(root / n)]
    for file in yamls:
        names = names_from_yaml(root, file)
        if names is not None:
            return names, file
    for folder in (root, root / "labels"):
        lists = [folder / n for n in LIST_NAMES] + sorted(folder.glob("*.names")) if folder.is_dir() else []
        for file in lists:
            if present(file):
                lines = [ln.strip() for ln in read_text(root, file).splitlines() if ln.strip()]
                return dict(enumerate(lines)), file
    return None, None


def label_candidates(image: str) -> list[str]:
    """labels/ mirror of the last images/ folder of the path, then a .txt beside the image."""
    parts = image.split("/")
    stem = posixpath.splitext(parts[-1])[0] + ".txt"
    out = []
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            out.append("/".join(parts[:i] + ["labels"] + parts[i + 1:-1] + [stem]))
            break
    return out + ["/".join(parts[:-1] + [stem])]


def parse_line(line: str, where: str, names: dict[int, str] | None) -> Box:
    fields = line.split()
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        raise AnnotationError(f"{where}: expected 'class cx cy w h' (or a polygon), got {len(fields)} fields")
    try:
        cls_value, coords = float(fields[0]), [float(v) for v in fields[1:]]
    except ValueError:
        raise AnnotationError(f"{where}: not numbers: {line.strip()!r}") from None
    if not cls_value.is_integer() or cls_value < 0 or (names is not None and int(cls_value) not in names):
        limit = f" (names has {len(names)})" if names is not None else ""
        raise AnnotationError(f"{where}: bad class index {fields[0]!r}{limit}")
    label = str(int(cls_value))
    if len(coords) == 4:
        cx, cy, w, h = coords
        return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, label)
    xs, ys = coords[0::2], coords[1::2]
    return Box(min(xs), min(ys), max(xs), max(ys), label)


def parse_file(root: Path, rel: str, names: dict[int, str] | None) -> list[Box]:
    lines = read_text(root, root / rel).splitlines()
    return [parse_line(ln, f"{rel}:{n}", names) for n, ln in enumerate(lines, start=1) if ln.strip()]


def read(path: Path, options: ReadOptions) -> Source:
    given = path if present(path) and path.suffix.lower() in (".yaml", ".yml") else None
    root = path.parent if given else path
    if not root.is_dir():
        raise DatasetError(f"{path}: the yolo format needs a folder or its data.yaml")
    names, names_file = find_names(root, given)
    files = list(walk_files(root))
    listed = set(files)
    in_images = any("images" in f.split("/")[:-1] for f in files)
    entries, missing, used = [], [], set()
    for rel in files:
        if not is_image(rel) or (in_images and "images" not in rel.split("/")[:-1]):
            continue
        label_rel = next((c for c in label_candidates(rel) if c in listed), None)
        boxes = parse_file(root, label_rel, names) if label_rel else []
        if label_rel is None:
            missing.append(rel)
        used.add(label_rel)
        entries.append(Entry(rel, single_label(boxes), split_of(rel, top_only=False), boxes,
                             boxes_normalized=True, where=label_rel or rel))
    if not entries:
        raise DatasetError(f"{root}: no images found (expected images/ and labels/ folders)")
    notes = count_note(missing, "images without a label file (kept, unlabelled)")
    orphans = [f for f in files if f.endswith(".txt") and f not in used and "labels" in f.split("/")[:-1]
               and posixpath.basename(f) not in LIST_NAMES]
    notes += count_note(orphans, "label files without an image skipped")
    return Source("yolo", root, entries, build_classes(entries, names, names_file, notes), notes)


def build_classes(entries: list[Entry], names: dict[int, str] | None, names_file: Path | None,
                  notes: list[str]) -> list[ClassInfo]:
    if names is not None:
        notes.append(f"class names from {names_file.name}")
        return [ClassInfo(str(i), n) for i, n in names.items()]
    seen = sorted({int(b.label) for e in entries for b in e.boxes if b.label is not None})
    notes.append("no class names file (data.yaml, classes.txt, *.names): classes named by index")
    return [ClassInfo(str(i), str(i)) for i in seen]
