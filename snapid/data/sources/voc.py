"""Pascal VOC XML: an .xml beside each image, or Annotations/ + JPEGImages/ (+ ImageSets/Main/*.txt).

Boxes come from <object><bndbox> (floats allowed) with label <name>. <size> is ignored: some tools
write 0 there, and the importer reads the real size from the image. Every file is parsed by defusedxml
with DTDs forbidden: a DOCTYPE, entity declaration or external reference (billion laughs, external
entities) is refused by the parser itself, whatever the file's encoding (UTF-8, UTF-16 with a BOM...).
"""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as DET

from snapid.data.manifest import Box, ClassInfo, Entry
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import (
    MAX_SIDECAR_BYTES,
    ImageIndex,
    count_note,
    is_image,
    nfc,
    read_text,
    require_dir,
    single_label,
    split_of,
    walk_files,
)
from snapid.data.sources.files import present, read_sidecar
from snapid.errors import AnnotationError

COORDS = ("xmin", "ymin", "xmax", "ymax")


def parse_xml(root: Path, file: Path) -> tuple[str | None, list[Box]]:
    """(<filename>, boxes) of one VOC annotation file inside ``root``."""
    raw = read_sidecar(root, file, MAX_SIDECAR_BYTES)
    try:
        tree = DET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise AnnotationError(f"{file}: XML with a DOCTYPE or entity declarations is refused "
                              f"({type(exc).__name__})") from None
    except ET.ParseError as exc:
        raise AnnotationError(f"{file}:{exc.position[0]}: invalid XML ({exc})") from None
    except ValueError as exc:   # e.g. an encoding the parser cannot read ("multi-byte encodings are not supported")
        raise AnnotationError(f"{file}: invalid XML ({exc})") from None
    if tree.tag != "annotation":
        raise AnnotationError(f"{file}: not a Pascal VOC file (root element <{tree.tag}>, expected <annotation>)")
    boxes = [_box(file, i, obj) for i, obj in enumerate(tree.findall("object"), start=1)]
    return (tree.findtext("filename") or "").strip() or None, boxes


def _box(file: Path, number: int, obj: ET.Element) -> Box:
    name = nfc((obj.findtext("name") or "").strip())
    if not name:
        raise AnnotationError(f"{file}: object {number} has no <name>")
    box = obj.find("bndbox")
    values = [None if box is None else box.findtext(k) for k in COORDS]
    try:
        x1, y1, x2, y2 = (float(str(v).strip()) for v in values)
    except ValueError:
        raise AnnotationError(f"{file}: object {number} ({name}): <bndbox> needs numeric "
                              f"xmin ymin xmax ymax, got {values}") from None
    return Box(x1, y1, x2, y2, name)


def image_sets(root: Path) -> dict[str, str]:
    """image id → split from ImageSets/Main/{train,val,test}.txt (trainval.txt only as a fallback)."""
    folder = root / "ImageSets" / "Main"
    out: dict[str, str] = {}
    for name, split in (("trainval", "train"), ("train", "train"), ("val", "val"), ("test", "test")):
        if present(folder / f"{name}.txt"):
            for line in read_text(root, folder / f"{name}.txt").splitlines():
                if line.split():
                    out[line.split()[0]] = split
    return out


def find_image(index: ImageIndex, xml_rel: str, filename: str | None, devkit: bool) -> str | None:
    """The image an XML describes: same stem in the image folder, else its <filename> there or,
    when unique, anywhere (annotations/xmls/ + images/ layouts)."""
    folder, name = posixpath.split(xml_rel)
    if devkit:
        folder = "/".join("JPEGImages" if p == "Annotations" else p for p in folder.split("/"))
    hit = index.find_stem(folder, posixpath.splitext(name)[0])
    if hit is None and filename:
        stem = posixpath.splitext(posixpath.basename(filename.replace("\\", "/")))[0]
        hit = index.find_stem(folder, stem) or index.find_name(filename, xml_rel)
    return hit


def read(path: Path, options: ReadOptions) -> Source:
    require_dir(path, "voc")
    devkit = (path / "Annotations").is_dir()
    files = list(walk_files(path))
    index = ImageIndex(files)
    sets = image_sets(path) if devkit else {}
    entries: dict[str, Entry] = {}
    orphans: list[str] = []
    for rel in files:
        if not rel.lower().endswith(".xml") or (devkit and not rel.startswith("Annotations/")):
            continue
        filename, boxes = parse_xml(path, path / rel)
        image = find_image(index, rel, filename, devkit)
        if image is None:
            orphans.append(rel)
            continue
        stem = posixpath.splitext(posixpath.basename(image))[0]
        split = sets.get(stem) if devkit else split_of(image)
        entries[image] = Entry(image, single_label(boxes), split, boxes, where=rel)
    notes = count_note(orphans, "XML files without a matching image skipped")
    entries_list = list(entries.values()) + unannotated(files, entries, devkit, sets, notes)
    labels = sorted({b.label for e in entries.values() for b in e.boxes if b.label})
    return Source("voc", path, entries_list, [ClassInfo(c, c) for c in labels], notes)


def unannotated(files: list[str], entries: dict[str, Entry], devkit: bool, sets: dict[str, str],
                notes: list[str]) -> list[Entry]:
    """Images with no XML: unlabelled entries when most images have one, else skipped (both noted)."""
    images = [f for f in files if is_image(f) and f not in entries and (not devkit or f.startswith("JPEGImages/"))]
    if not images:
        return []
    if len(entries) >= len(images):
        notes += count_note(images, "images without an XML file (kept, unlabelled)")
        return [Entry(f, None, sets.get(posixpath.splitext(posixpath.basename(f))[0]) if devkit else split_of(f),
                      where=f) for f in images]
    notes += count_note(images, "images without an XML file skipped (most images have none)")
    return []
