"""Records every stage reads: what a format reader yields (Entry), and what an import stores (Sample).

Readers parse annotations only; pixels are read once, by the importer, which turns each
Entry into a Sample with sha256, size and image statistics, or a Rejected record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test",
}


def normalize_split(value: str | None) -> str | None:
    """Map common split spellings to train/val/test; None or '' stays None. Unknown → ValueError."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if text not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {value!r} (expected one of {', '.join(SPLITS)})")
    return SPLIT_ALIASES[text]


@dataclass(frozen=True, slots=True)
class Box:
    """A box in pixels (x1, y1, x2, y2), or normalised to [0, 1] while Entry.boxes_normalized."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str | None = None

    def as_list(self) -> list:
        return [self.x1, self.y1, self.x2, self.y2, self.label]

    @classmethod
    def from_list(cls, item: list) -> Box:
        return cls(float(item[0]), float(item[1]), float(item[2]), float(item[3]), item[4] if len(item) > 4 else None)

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


@dataclass(slots=True)
class Entry:
    """One image as an annotation source describes it; no pixels read yet."""

    path: str                      # relative to the dataset root, POSIX separators
    label: str | None = None       # class id, always a string
    split: str | None = None       # train / val / test, or None when the source gives none
    boxes: list[Box] = field(default_factory=list)
    boxes_normalized: bool = False  # True: box coordinates are fractions of width/height (YOLO)
    group: str | None = None       # e.g. a Pl@ntNet observation id: a group never straddles splits
    where: str = ""                # "file:line" of the annotation, for error messages


@dataclass(frozen=True, slots=True)
class ClassInfo:
    id: str                                   # kept as a string: "1355936" never becomes 1355936
    name: str
    display_names: dict[str, str] = field(default_factory=dict)   # language → name


@dataclass(slots=True)
class ImageFacts:
    """What the importer learns by reading one file (reused on re-import when size+mtime match)."""

    sha256: str
    size_bytes: int
    mtime_ns: int
    width: int
    height: int
    format: str          # JPEG, PNG, ...
    mode: str            # colour mode before conversion: RGB, L, CMYK, RGBA, I;16, P...
    phash: str           # 64-bit perceptual hash, hex
    mean_rgb: list[float]
    hist: list[int]      # 3 x 16 bin colour histogram of a small RGB copy, R then G then B


@dataclass(slots=True)
class Sample:
    """One stored row of a dataset version's manifest."""

    path: str
    label: str | None
    split: str
    boxes: list[Box]
    group: str | None
    facts: ImageFacts
    box_notes: list[str] = field(default_factory=list)   # e.g. "box 0 clipped from (..)"


@dataclass(frozen=True, slots=True)
class Rejected:
    path: str
    reason: str          # a code such as empty_file, corrupt_image, outside_root (a path or link leaving the root)
    detail: str = ""


@dataclass(slots=True)
class Manifest:
    """One stored version of a dataset: what inspect, prepare and training read."""

    name: str
    version: int
    format: str
    root: str
    classes: list[ClassInfo]
    samples: list[Sample]
    rejected: list[Rejected]
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    created_at: str = ""

    def class_index(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.classes)}
