"""Helpers shared by the format readers: walking a tree, loading CSV/JSON, finding images by stem.

Readers only collect candidate files; the importer decodes them and rejects what is not an image.
Annotation files are read through files.read_sidecar: regular files inside the dataset root, size-capped.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from snapid.data.manifest import Box, Entry, normalize_split
from snapid.data.sources.files import read_sidecar
from snapid.errors import AnnotationError, DatasetError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .webp .gif .bmp .tif .tiff .heic .heif .avif".split()
)
# Files that describe a dataset rather than being part of it: never image candidates.
DOC_EXTENSIONS = frozenset(".txt .md .json .jsonl .xml .csv .tsv .yaml .yml".split())
MAX_MANIFEST_BYTES = 1 << 30   # one CSV/JSON manifest (COCO train2017 is ~450 MB)
MAX_SIDECAR_BYTES = 16 << 20   # one per-image annotation (XML, YOLO txt, AI-Hub JSON)
_NUMBERED = re.compile(r"^\d+[._ -]+")   # "1.Training" (AI-Hub) → "Training"


def is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def is_image(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_candidate(name: str) -> bool:
    """A file that may be an image: anything but annotation/doc files (the decoder decides later)."""
    return posixpath.splitext(name)[1].lower() not in DOC_EXTENSIONS


def walk_files(root: Path, *, hidden: bool = False) -> Iterator[str]:
    """Every file under root as a sorted POSIX relative path.

    Symlinked directories are never descended (os.walk(followlinks=False)); symlinked files are
    yielded, and the importer checks that they resolve inside the root.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if not hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        found.extend(prefix + f for f in filenames if hidden or not f.startswith("."))
    return iter(sorted(found))


def rel_path(root: Path, p: Path | str) -> str:
    """``p`` relative to ``root`` with POSIX separators; relative inputs are taken as already under root.

    A path escaping the root keeps its ``..`` so the importer rejects it as unsafe.
    """
    text = str(p).replace("\\", "/")
    if posixpath.isabs(text):
        text = Path(os.path.relpath(text, root)).as_posix()
    return posixpath.normpath(text)


def nfc(text: str) -> str:
    """Labels compare equal whatever the file system did (macOS stores Korean names decomposed)."""
    return unicodedata.normalize("NFC", text)


def split_of(rel: str, *, top_only: bool = True) -> str | None:
    """The split named by a directory of ``rel`` (train/ val/ test/, Training/, 1.Training/...)."""
    dirs = rel.split("/")[:-1]
    for part in dirs[:1] if top_only else dirs:
        split = split_name(part)
        if split:
            return split
    return None


def split_name(part: str) -> str | None:
    for text in (part, _NUMBERED.sub("", part)):
        try:
            split = normalize_split(text)
        except ValueError:
            continue
        if split:
            return split
    return None


def read_text(root: Path, path: Path, limit: int = MAX_SIDECAR_BYTES) -> str:
    """A UTF-8 annotation file: a regular file inside ``root`` of at most ``limit`` bytes (see files.py)."""
    raw = read_sidecar(root, path, limit)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise AnnotationError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None


def load_json(root: Path, path: Path, limit: int = MAX_MANIFEST_BYTES) -> Any:
    """Parse a JSON file inside ``root``; errors name the file and line."""
    text = read_text(root, path, limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def load_jsonl(root: Path, path: Path, limit: int = MAX_MANIFEST_BYTES) -> list[tuple[int, Any]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    rows = []
    for number, line in enumerate(read_text(root, path, limit).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    return rows


def sniff_delimiter(first_line: str, default: str = ",") -> str:
    """The most frequent of comma, semicolon and tab in the header line (csv.Sniffer guesses wildly)."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else default


def load_csv(root: Path, path: Path, limit: int = MAX_MANIFEST_BYTES) -> list[tuple[int, list[str]]]:
    """(line number, cells) for each non-blank row; BOM tolerated, delimiter sniffed."""
    text = read_text(root, path, limit)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = sniff_delimiter(first, "\t" if path.suffix.lower() == ".tsv" else ",")
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise AnnotationError(f"{path}:{reader.line_num}: {exc}") from None
    return rows


class ImageIndex:
    """Image files under a root, looked up by (folder, stem) or by basename; built once per read."""

    def __init__(self, paths: Iterable[str]):
        self.by_dir_stem: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.by_name: dict[str, list[str]] = defaultdict(list)
        for rel in paths:
            if not is_image(rel):
                continue
            folder, name = posixpath.split(rel)
            self.by_dir_stem[(folder, posixpath.splitext(name)[0])].append(rel)
            self.by_name[name].append(rel)

    def find_stem(self, folder: str, stem: str) -> str | None:
        """The image ``folder/stem.<any image extension>``; with several, the first in sorted order."""
        hits = self.by_dir_stem.get((folder, stem))
        return sorted(hits)[0] if hits else None

    def find_name(self, name: str, where: str) -> str | None:
        """The one image anywhere under the root with this basename; ambiguity is an error."""
        hits = self.by_name.get(posixpath.basename(name.replace("\\", "/")))
        if not hits:
            return None
        if len(hits) > 1:
            shown = ", ".join(hits[:3]) + (" ..." if len(hits) > 3 else "")
            raise AnnotationError(f"{where}: image {name!r} is ambiguous: {len(hits)} files match ({shown})")
        return hits[0]


def single_label(boxes: list[Box]) -> str | None:
    """The image label of a box-annotated image: the one box label when all agree, else None."""
    labels = {b.label for b in boxes}
    return labels.pop() if len(labels) == 1 else None


def count_note(items: list[str], what: str, shown: int = 3) -> list[str]:
    """A one-line note "N <what>: a, b, c ..." or nothing when there are none."""
    if not items:
        return []
    head = ", ".join(items[:shown]) + (" ..." if len(items) > shown else "")
    return [f"{len(items)} {what}: {head}"]


def require_dir(path: Path, fmt: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: the {fmt} format needs a folder")


class EntryMerger:
    """Merge manifest rows (one per box) into one Entry per path; conflicting rows are errors."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._labels: dict[str, set[str]] = {}
        self._boxless: set[str] = set()

    def add(self, path: str, label: str, split: str | None, group: str | None,
            box: Box | None, where: str) -> None:
        entry = self.entries.get(path)
        if entry is None:
            self.entries[path] = Entry(path, label, split, [box] if box else [], group=group, where=where)
            self._labels[path] = {label}
        else:
            self._check_same(entry, "split", split, where)
            self._check_same(entry, "group", group, where)
            if box:
                entry.boxes.append(box)
            self._labels[path].add(label)
        if box is None:
            self._boxless.add(path)
        labels = self._labels[path]
        if len(labels) > 1 and path in self._boxless:
            # several labels are fine for boxes of one image, not for whole-image labels
            first = self.entries[path].where
            raise AnnotationError(f"{where}: {path!r} is labelled {sorted(labels)} by different rows "
                                  f"(first at {first})")
        self.entries[path].label = label if len(labels) == 1 else None

    @staticmethod
    def _check_same(entry: Entry, key: str, value: str | None, where: str) -> None:
        old = getattr(entry, key)
        if value is not None and old is not None and value != old:
            raise AnnotationError(f"{where}: {entry.path!r} has {key} {value!r} here but {old!r} at {entry.where}")
        if old is None:
            setattr(entry, key, value)

    def result(self) -> list[Entry]:
        return list(self.entries.values())
