"""`snapid data export`: one stored dataset version written in a standard layout, so the same photos, labels,
splits and boxes go to Ultralytics, Roboflow, Label Studio or another snapid, and come back with `snapid data import`.

Layouts (each the one the matching reader in snapid/data/sources/ reads back, found by `--format auto`):

- folder: ``<split>/<class>/<image>``; one label per image (boxes are not kept);
- csv:    ``labels.csv`` (path, label, split, group, x1, y1, x2, y2: one row per box, or one per image without
          boxes) + ``images/<split>/<image>``;
- coco:   ``annotations/instances_<split>.json`` + ``images/<split>/<image>``; boxes [x, y, w, h] in pixels;
- yolo:   ``data.yaml`` (class index → name) + ``images/<split>/<image>`` + ``labels/<split>/<stem>.txt``
          (``class cx cy w h``, normalised; an empty file for an image without boxes);
- voc:    ``JPEGImages/<image>`` + ``Annotations/<stem>.xml`` + ``ImageSets/Main/<split>.txt``.

Labels are written as class names (folder, csv, voc) or as class ids with their names (coco keeps integer ids,
yolo uses the class's position), so a re-import names the same classes. Image files are copied (sha256 checked
against the manifest as they are copied) or, with ``link``, hard-linked when unchanged and on the same file
system. Nothing is half-written: everything goes into a temporary folder beside ``out``, renamed at the end;
a non-empty ``out`` is refused. A class name that is not a safe folder name (a slash, ``..``, a leading dot,
empty) gets a safe folder name, and every written path is a single checked name under ``out``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snapid.data.layout_writers import WRITERS, Item, box_label, one_line
from snapid.data.manifest import SPLITS, Manifest, Sample
from snapid.data.sources.common import IMAGE_EXTENSIONS, count_note
from snapid.data.sources.files import inside_root
from snapid.errors import DatasetError

FORMATS = ("folder", "csv", "coco", "yolo", "voc")
BOX_FORMATS = ("csv", "coco", "yolo", "voc")
EXTENSION_OF = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
                "HEIF": ".heic", "AVIF": ".avif", "MPO": ".jpg"}
MAX_NAME_CHARS = 120      # a folder or file stem: far under the 255 bytes file systems allow, even in UTF-8
_UNSAFE_IN_NAME = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
Progress = Callable[[int, int], None]


@dataclass
class ExportReport:
    dataset: str
    version: int
    format: str
    out: str
    images: int
    boxes: int
    classes: int
    splits: dict[str, int]
    skipped: dict[str, int]          # reason → images not written
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# --- names -------------------------------------------------------------------------------------------------
def class_names(manifest: Manifest) -> dict[str, str]:
    """class id → the name written for it: the class's name on one line (as readers strip and normalise it),
    its id when it has none, made unique with the id when two classes share a name. Labels the class list
    lacks are added after it."""
    ids = [c.id for c in manifest.classes]
    seen = {s.label for s in manifest.samples if s.label is not None}
    seen |= {b.label for s in manifest.samples for b in s.boxes if b.label is not None}
    ids += sorted(seen - set(ids))
    given = {c.id: c.name for c in manifest.classes}
    names = {i: one_line(given.get(i) or i) or one_line(i) or "unnamed" for i in ids}
    counts = Counter(names.values())
    return {i: (n if counts[n] == 1 else f"{n} ({one_line(i)})") for i, n in names.items()}


def safe_name(text: str, fallback: str = "unnamed") -> str:
    """One path component that cannot leave its folder or hide: no separators or control characters, no
    leading dot (so never '.' or '..'), not empty, at most MAX_NAME_CHARS characters."""
    name = _UNSAFE_IN_NAME.sub("_", one_line(text)).strip()[:MAX_NAME_CHARS].strip()
    if name.startswith("."):
        name = "_" + name[1:]
    return name or fallback


def folder_names(names: dict[str, str], notes: list[str]) -> dict[str, str]:
    """class id → its folder, unique even on a case-insensitive file system; renamed ones are noted."""
    taken: set[str] = set()
    out, renamed = {}, []
    for cid, name in names.items():
        base = safe_name(name)
        folder, n = base, 1
        while folder.lower() in taken:
            n += 1
            folder = f"{base}_{n}"
        taken.add(folder.lower())
        out[cid] = folder
        if folder != name:
            renamed.append(f"{name!r} → {folder!r}")
    notes += count_note(renamed, "class names are not safe folder names and were written as", shown=5)
    return out


class _Names:
    """Unique, safe image file names per folder (stems compared without case: YOLO and VOC pair files by stem)."""

    def __init__(self) -> None:
        self.taken: set[tuple[str, str]] = set()

    def place(self, folder: str, sample: Sample) -> str:
        base = posixpath.basename(sample.path.replace("\\", "/"))
        stem, ext = posixpath.splitext(base)
        if ext.lower() not in IMAGE_EXTENSIONS:
            stem, ext = base, EXTENSION_OF.get(sample.facts.format, ".img")
        stem = safe_name(stem, "image")
        candidate, n = stem, 1
        while (folder, candidate.lower()) in self.taken:
            n += 1
            candidate = f"{stem}-{n}"
        self.taken.add((folder, candidate.lower()))
        return f"{folder}/{candidate}{ext.lower()}"   # ext: one of IMAGE_EXTENSIONS or EXTENSION_OF's


# --- planning: which images go where -------------------------------------------------------------------------
def _plan(manifest: Manifest, fmt: str, splits: Sequence[str], names: dict[str, str], notes: list[str],
          skipped: Counter) -> list[Item]:
    chosen = [s for s in manifest.samples if s.split in splits]
    placer = _Names()
    items = []
    if fmt == "folder":
        used = {s.label for s in chosen}
        folders = folder_names({cid: n for cid, n in names.items() if cid in used}, notes)
        for s in chosen:
            if s.label is None:
                skipped["no single label (a folder holds one label per image)"] += 1
                continue
            items.append(Item(s, placer.place(f"{s.split}/{folders[s.label]}", s)))
        if any(s.boxes for s in chosen):
            notes.append("boxes are not kept by the folder layout (use csv, coco, yolo or voc)")
        return items
    if fmt == "csv":
        labelled = [s for s in chosen if s.label is not None or any(b.label is not None for b in s.boxes)]
        if len(labelled) < len(chosen):
            skipped["no label (a csv row needs one)"] += len(chosen) - len(labelled)
        chosen = labelled
    for s in chosen:
        folder = "JPEGImages" if fmt == "voc" else f"images/{s.split}"
        items.append(Item(s, placer.place(folder, s)))
    if fmt in ("coco", "yolo", "voc"):
        lost = sum(1 for s in chosen if s.label is not None and not s.boxes)
        if lost:
            notes.append(f"{lost} images have a label but no boxes: {fmt} holds only boxes, so they are written "
                         "without a label (use folder or csv for image labels)")
    return items


# --- copying -----------------------------------------------------------------------------------------------
def _copy(root_real: str, sample: Sample, dest: Path, link: bool) -> str | None:
    """Put the sample's file at ``dest``; None when done, else why not (the file is then left out)."""
    src = inside_root(root_real, sample.path)
    if src is None:
        return "outside the dataset root"
    try:
        st = os.stat(src)
    except OSError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "missing"
    facts = sample.facts
    if link and st.st_size == facts.size_bytes and st.st_mtime_ns == facts.mtime_ns:
        try:
            os.link(src, dest)   # the importer's own test of an unchanged file: same size and mtime
            return None
        except OSError:
            pass                 # another file system, or links not allowed: copy
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "xb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != facts.sha256:
        dest.unlink()
        return "changed since the import (sha256 differs)"
    return None


def _copy_all(manifest: Manifest, items: list[Item], tmp: Path, link: bool, skipped: Counter,
              progress: Progress | None) -> list[Item]:
    root_real = os.path.realpath(manifest.root)
    written = []
    total = len(items)
    if progress:
        progress(0, total)
    for n, item in enumerate(items, 1):
        dest = tmp / item.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        reason = _copy(root_real, item.sample, dest, link)
        if reason:
            skipped[reason] += 1
        else:
            written.append(item)
        if progress and (n % 32 == 0 or n == total):
            progress(n, total)
    return written


# --- the export ----------------------------------------------------------------------------------------------
def check_out(out: Path) -> None:
    """Refuse an ``out`` that is a file or a folder with anything in it (nothing is ever overwritten)."""
    if os.path.lexists(out) and (not out.is_dir() or out.is_symlink()):
        raise DatasetError(f"--out {out}: exists and is not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"--out {out}: the folder is not empty; give a new or empty folder")


def export_dataset(manifest: Manifest, out: Path, *, fmt: str, splits: Sequence[str] | None = None,
                   link: bool = False, progress: Progress | None = None) -> ExportReport:
    """Write ``manifest`` (one stored version) in layout ``fmt`` at ``out``; ``splits``: only these (default all).
    Files that are missing or changed since the import are left out and counted in ``skipped``."""
    started = time.perf_counter()
    if fmt not in FORMATS:
        raise DatasetError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    splits = list(splits or SPLITS)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DatasetError(f"--split {unknown[0]!r}: expected one of {', '.join(SPLITS)}")
    out = Path(out)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    skipped: Counter = Counter()
    names = class_names(manifest)
    items = _plan(manifest, fmt, splits, names, notes, skipped)
    if not items:
        raise DatasetError(f"dataset {manifest.name!r} v{manifest.version}: no images to export in split(s) "
                           f"{', '.join(splits)} as {fmt}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        written = _copy_all(manifest, items, tmp, link, skipped, progress)
        if not written:
            raise DatasetError(f"dataset {manifest.name!r} v{manifest.version}: none of its files could be read "
                               f"from {manifest.root} ({', '.join(skipped)})")
        boxes = WRITERS[fmt](tmp, manifest, written, names) if fmt in WRITERS else 0
        _finish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lost = sum(1 for s in manifest.samples for b in s.boxes if s.split in splits and box_label(b, s) is None)
    if lost and fmt in BOX_FORMATS:
        notes.append(f"{lost} boxes without a label left out")
    return ExportReport(
        dataset=manifest.name, version=manifest.version, format=fmt, out=str(out), images=len(written), boxes=boxes,
        classes=len(names), splits=dict(sorted(Counter(item.sample.split for item in written).items())),
        skipped=dict(skipped), notes=notes, seconds=round(time.perf_counter() - started, 2))


def _finish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place: ``out`` must still be absent or an empty folder."""
    try:
        if out.is_dir() and not out.is_symlink():
            out.rmdir()            # empty (checked at the start); fails if something appeared since
        os.replace(tmp, out)
    except OSError as exc:
        raise DatasetError(f"--out {out}: could not be put in place ({exc.strerror or exc}); "
                           "nothing was written") from None
