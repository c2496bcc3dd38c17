"""One reader per dataset format. A reader parses annotations only and returns a Source.

Every reader is a function ``read(path: Path, options: ReadOptions) -> Source``. Readers never
decode pixels; paths they yield are relative to ``Source.root`` with POSIX separators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from snapid.data.manifest import ClassInfo, Entry

FORMATS = ("folder", "csv", "json", "plantnet", "coco", "voc", "yolo", "aihub")


@dataclass
class ReadOptions:
    columns: dict[str, str] = field(default_factory=dict)   # snapid name → header name or 0-based index
    has_header: bool | None = None                          # None: guess


@dataclass
class Source:
    format: str
    root: Path                              # the dataset root that Entry.path is relative to
    entries: list[Entry]
    classes: list[ClassInfo] | None = None  # None: derived from the labels seen
    notes: list[str] = field(default_factory=list)    # things the user should know (shown at import)


Reader = Callable[[Path, ReadOptions], Source]
