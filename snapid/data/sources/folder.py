"""Class-per-folder: ``root/<class>/...`` or ``root/<split>/<class>/...`` (train/ val/ test/ and aliases).

Every non-hidden file in a class folder (at any depth) that is not an annotation or doc file is a
candidate; the decoder rejects non-images later. Files directly in the root are ignored with a note.
"""

from __future__ import annotations

from pathlib import Path

from snapid.data.manifest import ClassInfo, Entry
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import count_note, is_candidate, nfc, require_dir, split_name, walk_files
from snapid.errors import DatasetError


def split_layout(root: Path) -> bool:
    """True when every top folder is a split name; a lone class called "train" stays a class."""
    tops = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(tops) and all(split_name(name) for name in tops)


def read(path: Path, options: ReadOptions) -> Source:
    require_dir(path, "folder")
    by_split = split_layout(path)
    entries: list[Entry] = []
    loose: list[str] = []
    for rel in walk_files(path):
        if not is_candidate(rel):
            continue
        parts = rel.split("/")
        split = split_name(parts[0]) if by_split else None
        class_parts = parts[1:] if by_split else parts
        if len(class_parts) < 2:
            loose.append(rel)   # not inside a class folder: no label to give it
            continue
        entries.append(Entry(rel, nfc(class_parts[0]), split, where=rel))
    if not entries:
        layout = "<split>/<class>/<image>" if by_split else "<class>/<image>"
        raise DatasetError(f"{path}: no images in class folders (expected {layout})")
    labels = sorted({e.label for e in entries if e.label})
    notes = count_note(loose, "files outside any class folder ignored")
    if by_split:
        notes.append(f"splits from top folders: {', '.join(sorted({e.split for e in entries if e.split}))}")
    return Source("folder", path, entries, [ClassInfo(c, c) for c in labels], notes)
