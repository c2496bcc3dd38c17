"""Which reader a path needs (``detect_format``) and one entry point for all of them (``read_source``).

Checks run from the most specific layout to the most general, so a VOC set whose split folders
look like class folders is still read as VOC; the folder format is the last resort.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

from snapid.data.sources import FORMATS, ReadOptions, Source, coco, csv, plantnet, yolo
from snapid.data.sources.common import is_candidate, load_json, split_name
from snapid.data.sources.files import peek_sidecar, present
from snapid.errors import AnnotationError, DatasetError, NotFound, UnsafeFile

Found = tuple[str, str] | None
_PEEK = 5   # annotation files opened per check: enough to tell, cheap on huge trees


def iter_files(root: Path) -> Iterator[str]:
    """Lazy walk (relative POSIX paths, hidden skipped, symlinked dirs not followed) for early exits."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames):
            if not name.startswith("."):
                yield name if base == "." else f"{base}/{name}"


def _peek(root: Path, file: Path, size: int = 1 << 16) -> bytes:
    """The start of an annotation file; one that may not be read (files.py) is refused, naming it."""
    return peek_sidecar(root, file, size)


def _split_dirs(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.is_dir() and split_name(p.name)]


def check_plantnet(root: Path) -> Found:
    if any(present(root / n) for n in (plantnet.METADATA_NAME, *plantnet.NAMES_FILES)):
        return "plantnet", "found a Pl@ntNet-300K metadata or species-names file"
    meta = plantnet.find_metadata(root)
    if meta and b"species_id" in _peek(root, meta):   # a generic metadata.csv is not Pl@ntNet
        return "plantnet", f"{meta.name} has species_id metadata"
    return None


def check_yolo(root: Path) -> Found:
    labels = [d / "labels" for d in [root, *_split_dirs(root)] if (d / "labels").is_dir()]
    has_txt = any(next((f for f in iter_files(d) if f.endswith(".txt")), None) for d in labels)
    if not has_txt:
        return None
    names, file = yolo.find_names(root, None)
    if names is not None:
        return "yolo", f"labels/ holds .txt files and {file.name} names the classes"
    if (root / "images").is_dir() or any((d / "images").is_dir() for d in _split_dirs(root)):
        return "yolo", "images/ and labels/ folders with .txt label files"
    return None


def check_coco(root: Path) -> Found:
    jsons = [p for d in (root, root / "annotations", *_split_dirs(root)) if d.is_dir() for p in d.glob("*.json")]
    if not jsons or len(jsons) > 6:   # many JSONs: per-image files (AI-Hub), not one COCO file
        return None
    try:
        chosen = coco.choose_jsons(root)
    except UnsafeFile:
        raise
    except DatasetError:
        return None
    if all(_single_image(root, p) for p, _ in chosen) and _more_jsons(root, len(chosen)):
        return None   # one-image files among other JSONs: per-image AI-Hub annotations
    return "coco", f"COCO annotations in {', '.join(p.relative_to(root).as_posix() for p, _ in chosen)}"


def _single_image(root: Path, file: Path) -> bool:
    if file.stat().st_size > 1 << 20:   # a one-image file is small; never load a big COCO file twice
        return False
    try:
        return len(load_json(root, file).get("images", [])) <= 1
    except UnsafeFile:
        raise
    except (AnnotationError, AttributeError, TypeError):
        return False


def _more_jsons(root: Path, known: int) -> bool:
    jsons = (f for f in iter_files(root) if f.lower().endswith(".json"))
    return len(list(islice(jsons, known + 1))) > known


def check_voc(root: Path) -> Found:
    places = [root, root / "Annotations", *_split_dirs(root)]
    xmls = [p for d in places if d.is_dir() for p in islice(sorted(d.glob("*.xml")), _PEEK)]
    if any(b"<annotation" in _peek(root, p) for p in xmls[:_PEEK]):
        return "voc", f"Pascal VOC XML files such as {xmls[0].relative_to(root).as_posix()}"
    return None


def check_aihub(root: Path) -> Found:
    jsons = islice((f for f in iter_files(root) if f.lower().endswith(".json")), _PEEK)
    for rel in jsons:
        if coco.has_keys(root, root / rel, ("images", "annotations")):
            return "aihub", f"per-image JSON files with images and annotations, such as {rel}"
    return None


def check_csv(root: Path) -> Found:
    hits = [p for p in sorted(root.iterdir()) if present(p) and p.suffix.lower() in csv.MANIFEST_SUFFIXES
            and csv.has_path_column(root, p)]
    return ("csv", f"{hits[0].name} has a path column") if len(hits) == 1 else None


def check_folder(root: Path) -> Found:
    first = next((f for f in iter_files(root) if "/" in f and is_candidate(f)), None)
    return ("folder", f"files inside sub-folders, such as {first}: one folder per class") if first else None


CHECKS: tuple[Callable[[Path], Found], ...] = (
    check_plantnet, check_yolo, check_coco, check_voc, check_aihub, check_csv, check_folder)


def detect_file(path: Path) -> tuple[str, str]:
    suffix = path.suffix.lower()
    if suffix in csv.MANIFEST_SUFFIXES:
        return "csv", f"{path.name} is a CSV file"
    if suffix == ".json":
        if coco.has_keys(path.parent, path):
            return "coco", f"{path.name} has images, annotations and categories (COCO)"
        return "json", f"{path.name} is a JSON manifest"
    if suffix == ".jsonl":
        return "json", f"{path.name} is a JSON Lines manifest"
    if suffix in (".yaml", ".yml"):
        return "yolo", f"{path.name} is a YOLO dataset YAML"
    raise DatasetError(f"{path}: cannot tell the format of this file (expected .csv, .tsv, .json, .jsonl, "
                       ".yaml, or a folder)")


def detect_format(path: Path) -> tuple[str, str]:
    """(format, a short sentence saying why)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path}: no such file or folder")
    if path.is_file():
        return detect_file(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: neither a regular file nor a folder")
    for check in CHECKS:
        found = check(path)
        if found:
            return found
    raise DatasetError(
        f"{path}: no dataset found: looked for Pl@ntNet metadata, YOLO labels/ with .txt files, a COCO JSON, "
        "Pascal VOC .xml files, per-image AI-Hub JSON, a CSV with a path column, and class folders of images")


def read_source(path: Path, fmt: str = "auto", options: ReadOptions | None = None) -> Source:
    """Read a dataset with the named reader, or the detected one when fmt is "auto"."""
    path = Path(path).expanduser()
    name = (fmt or "auto").strip().lower()
    if name != "auto" and name not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    if not path.exists():
        raise NotFound(f"{path}: no such file or folder")
    if name == "auto":
        name, _ = detect_format(path)
    reader = importlib.import_module(f"snapid.data.sources.{name}")
    source = reader.read(path, options or ReadOptions())
    if not source.entries:
        raise DatasetError(f"{path}: the {name} reader found no images")
    return source
