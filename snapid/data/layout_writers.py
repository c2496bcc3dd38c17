"""The annotation files of each export layout (snapid/data/export_layouts.py places the images): labels.csv,
COCO JSON per split, YOLO data.yaml + one .txt per image, Pascal VOC XML per image + ImageSets/Main. Each writer
takes the finished image list and returns how many boxes it wrote."""

from __future__ import annotations

import csv
import json
import posixpath
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from snapid.data.manifest import SPLITS, Box, Manifest, Sample

CSV_COLUMNS = ("path", "label", "split", "group", "x1", "y1", "x2", "y2")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class Item:
    sample: Sample
    dest: str                        # the image's path under the export folder (POSIX)


def one_line(text: str) -> str:
    """Text as the readers give it back: control characters and runs of white space as one space, stripped, NFC."""
    return unicodedata.normalize("NFC", re.sub(r"\s+", " ", _CONTROL.sub(" ", str(text))).strip())


def number(value: float) -> str:
    """A coordinate as text: an integer without '.0' (VOC tools often parse int), else every digit of the float."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def box_label(box: Box, sample: Sample) -> str | None:
    return box.label if box.label is not None else sample.label


def write_csv(tmp: Path, manifest: Manifest, items: list[Item], names: dict[str, str]) -> int:
    boxes = 0
    with open(tmp / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(CSV_COLUMNS)
        for item in items:
            s = item.sample
            group = one_line(s.group) if s.group else ""
            rows = [[item.dest, names[label], s.split, group, *(number(v) for v in (b.x1, b.y1, b.x2, b.y2))]
                    for b in s.boxes if (label := box_label(b, s)) is not None]
            boxes += len(rows)
            out.writerows(rows or [[item.dest, names[s.label], s.split, group, "", "", "", ""]])
    return boxes


def _coco_ids(names: dict[str, str]) -> dict[str, int]:
    """Category ids: the class ids themselves when all are plain non-negative integers, else 1..N."""
    ids = list(names)
    if all(i.isdigit() and str(int(i)) == i for i in ids):
        return {i: int(i) for i in ids}
    return {i: n for n, i in enumerate(ids, 1)}


def write_coco(tmp: Path, manifest: Manifest, items: list[Item], names: dict[str, str]) -> int:
    ids = _coco_ids(names)
    categories = [{"id": ids[c], "name": names[c], "supercategory": ""} for c in names]
    boxes = 0
    (tmp / "annotations").mkdir()
    for split in SPLITS:
        part = [item for item in items if item.sample.split == split]
        if not part:
            continue
        images, annotations = [], []
        for n, item in enumerate(part, 1):
            s = item.sample
            images.append({"id": n, "file_name": posixpath.basename(item.dest), "width": s.facts.width,
                           "height": s.facts.height})
            for b in s.boxes:
                label = box_label(b, s)
                if label is None:
                    continue
                w, h = b.x2 - b.x1, b.y2 - b.y1
                annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": ids[label],
                                    "bbox": [b.x1, b.y1, w, h], "area": w * h, "iscrowd": 0})
        boxes += len(annotations)
        data = {"info": {"description": f"{manifest.name} version {manifest.version}, {split} split",
                         "version": str(manifest.version)},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories}
        (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(data, ensure_ascii=False),
                                                                     encoding="utf-8")
    return boxes


def write_yolo(tmp: Path, manifest: Manifest, items: list[Item], names: dict[str, str]) -> int:
    index = {cid: i for i, cid in enumerate(names)}
    boxes = 0
    for item in items:
        s = item.sample
        w, h = s.facts.width, s.facts.height
        lines = []
        for b in s.boxes:
            label = box_label(b, s)
            if label is None:
                continue
            cx, cy, bw, bh = (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h, (b.x2 - b.x1) / w, (b.y2 - b.y1) / h
            lines.append(f"{index[label]} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        boxes += len(lines)
        label_file = tmp / ("labels/" + item.dest.removeprefix("images/")).rsplit(".", 1)[0]
        label_file = label_file.with_name(label_file.name + ".txt")
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    present = [split for split in SPLITS if any(item.sample.split == split for item in items)]
    data = {**{split: f"images/{split}" for split in present}, "nc": len(names),
            "names": {i: names[cid] for cid, i in index.items()}}
    (tmp / "data.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return boxes


def write_voc(tmp: Path, manifest: Manifest, items: list[Item], names: dict[str, str]) -> int:
    boxes = 0
    (tmp / "Annotations").mkdir()
    sets = tmp / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    by_split: dict[str, list[str]] = {}
    for item in items:
        s = item.sample
        file_name = posixpath.basename(item.dest)
        stem = posixpath.splitext(file_name)[0]
        by_split.setdefault(s.split, []).append(stem)
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = file_name
        ET.SubElement(ET.SubElement(root, "source"), "database").text = one_line(f"{manifest.name} v{manifest.version}")
        size = ET.SubElement(root, "size")
        for key, value in (("width", s.facts.width), ("height", s.facts.height),
                           ("depth", 1 if s.facts.mode in ("1", "L", "I", "I;16", "F") else 3)):
            ET.SubElement(size, key).text = str(value)
        ET.SubElement(root, "segmented").text = "0"
        for b in s.boxes:
            label = box_label(b, s)
            if label is None:
                continue
            obj = ET.SubElement(root, "object")
            for key, value in (("name", names[label]), ("pose", "Unspecified"), ("truncated", "0"),
                               ("difficult", "0")):
                ET.SubElement(obj, key).text = value
            box = ET.SubElement(obj, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (b.x1, b.y1, b.x2, b.y2), strict=True):
                ET.SubElement(box, key).text = number(value)
            boxes += 1
        ET.indent(root)
        (tmp / "Annotations" / f"{stem}.xml").write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
    for split, stems in by_split.items():
        (sets / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8")
    return boxes


Writer = Callable[[Path, Manifest, list[Item], dict[str, str]], int]
WRITERS: dict[str, Writer] = {"csv": write_csv, "coco": write_coco, "yolo": write_yolo, "voc": write_voc}
