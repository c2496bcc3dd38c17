"""`snapid data export`: import → export → import keeps the samples, labels, splits (and boxes, groups where the
layout holds them) for every layout; unsafe class names stay inside --out; nothing is half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from snapid.data.export_layouts import FORMATS, export_dataset, safe_name
from snapid.errors import DatasetError
from snapid.importer import import_dataset
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from tests.conftest import write_image

SPLIT_OF = ["train"] * 6 + ["val"] * 3 + ["test"] * 3


def load(engine, name: str):
    with transaction(engine) as session:
        return dataset_store.load_manifest(session, name=name)


def boxed_dataset(root: Path) -> Path:
    """12 photos (two sizes, JPEG and PNG) with one to three boxes each, fractional coordinates, groups, given
    splits; one photo holds boxes of two classes (no image label)."""
    rows = ["path,label,split,group,x1,y1,x2,y2"]
    for i, split in enumerate(SPLIT_OF):
        ext = "png" if i % 3 == 0 else "jpg"
        size = (96, 64) if i % 2 else (80, 120)
        write_image(root / "photos" / f"p{i}.{ext}", size=size, seed=i)
        label = ("round pill", "oval pill", "capsule")[i % 3]
        boxes = [(2 + i, 3.5, 30.25, 40), (35, 10, 60.5 + i / 4, 50)][: 1 + i % 2]
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            box_label = "round pill" if (i == 5 and j == 1) else label
            rows.append(f"photos/p{i}.{ext},{box_label},{split},g{i // 2},{x1},{y1},{x2},{y2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def summary(manifest, *, boxes: bool, groups: bool = False) -> list:
    """What a layout must keep, by file content and class name (ids may change: yolo numbers the classes)."""
    names = {c.id: c.name for c in manifest.classes}
    out = []
    for s in manifest.samples:
        row = [s.facts.sha256, names.get(s.label) if s.label is not None else None, s.split]
        if boxes:
            row.append(sorted((names[b.label], b.x1, b.y1, b.x2, b.y2) for b in s.boxes))
        if groups:
            row.append(s.group)
        out.append(row)
    return sorted(out, key=lambda r: r[0])


def same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]
        if len(w) > 3:   # boxes: YOLO stores six decimals of a fraction of the image side
            assert [b[0] for b in g[3]] == [b[0] for b in w[3]]
            assert [b[1:] for b in g[3]] == [pytest.approx(b[1:], abs=1e-3) for b in w[3]]
        assert g[4:] == w[4:]


@pytest.fixture
def boxed(tmp_path, engine) -> str:
    import_dataset(boxed_dataset(tmp_path / "boxed"), name="boxed", engine=engine)
    return "boxed"


@pytest.mark.parametrize("fmt", ["csv", "coco", "yolo", "voc"])
def test_boxes_labels_and_splits_survive_a_round_trip(tmp_path, engine, boxed, fmt):
    before = load(engine, boxed)
    report = export_dataset(before, tmp_path / "out", fmt=fmt)
    assert report.images == 12 and report.boxes == 18 and report.splits == {"test": 3, "train": 6, "val": 3}
    import_dataset(tmp_path / "out", name="again", engine=engine)   # --format auto finds the layout
    after = load(engine, "again")
    assert after.format == fmt
    same(summary(after, boxes=True, groups=fmt == "csv"), summary(before, boxes=True, groups=fmt == "csv"))
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("fmt", ["folder", "csv"])
def test_image_labels_and_splits_survive_a_round_trip(tmp_path, engine, shapes, fmt):
    before = load(engine, shapes)
    export_dataset(before, tmp_path / "out", fmt=fmt)
    import_dataset(tmp_path / "out", name="again", engine=engine)
    after = load(engine, "again")
    assert after.format == fmt and summary(after, boxes=False) == summary(before, boxes=False)


def test_folder_keeps_single_labels_and_says_what_it_drops(tmp_path, engine, boxed):
    report = export_dataset(load(engine, boxed), tmp_path / "out", fmt="folder")
    assert report.images == 11 and sum(report.skipped.values()) == 1   # p5 has boxes of two classes
    assert any("boxes are not kept" in n for n in report.notes)
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == ["capsule", "oval pill", "round pill"]


def test_the_layout_files_are_the_standard_ones(tmp_path, engine, boxed):
    manifest = load(engine, boxed)
    export_dataset(manifest, tmp_path / "yolo", fmt="yolo")
    import yaml

    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["train"] == "images/train" and data["nc"] == 3 and sorted(data["names"]) == [0, 1, 2]
    line = (tmp_path / "yolo" / "labels" / "train" / "p0.txt").read_text().split()
    assert len(line) == 5 and all(0 <= float(v) <= 1 for v in line[1:])
    export_dataset(manifest, tmp_path / "coco", fmt="coco")
    coco = json.loads((tmp_path / "coco" / "annotations" / "instances_val.json").read_text())
    assert {"images", "annotations", "categories"} <= set(coco) and len(coco["images"]) == 3
    assert all(len(a["bbox"]) == 4 and a["area"] > 0 for a in coco["annotations"])
    export_dataset(manifest, tmp_path / "voc", fmt="voc")
    xml = (tmp_path / "voc" / "Annotations" / "p0.xml").read_text()
    assert "<filename>p0.png</filename>" in xml and "<xmin>2</xmin>" in xml and "<ymin>3.5</ymin>" in xml
    assert len((tmp_path / "voc" / "ImageSets" / "Main" / "test.txt").read_text().split()) == 3


def test_one_split_only(tmp_path, engine, boxed):
    report = export_dataset(load(engine, boxed), tmp_path / "out", fmt="coco", splits=["val"])
    assert report.splits == {"val": 3}
    assert [p.name for p in (tmp_path / "out" / "annotations").iterdir()] == ["instances_val.json"]


def test_unsafe_class_names_become_safe_folders_inside_out(tmp_path, engine):
    root = tmp_path / "odd"
    labels = ["../../escape", "a/b", ".hidden", "Rose", "rose", "..", "x\\y"]
    rows = ["path,label,split"]
    for i, label in enumerate(labels * 2):
        write_image(root / f"{i}.jpg", seed=i)
        rows.append(f'{i}.jpg,"{label}",{"train" if i < len(labels) else "test"}')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    import_dataset(root / "labels.csv", name="odd", engine=engine)
    out = tmp_path / "deep" / "out"
    report = export_dataset(load(engine, "odd"), out, fmt="folder")
    assert report.images == 14 and any("not safe folder names" in n for n in report.notes)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and root not in p.parents and "home" not in p.parts]
    assert len(written) == 14 and all(out in p.parents for p in written)
    folders = sorted(p.name for p in (out / "train").iterdir())
    assert len(folders) == len(labels) and not any(f.startswith(".") or "/" in f or "\\" in f for f in folders)
    import_dataset(out, name="odd-again", engine=engine)
    assert len(load(engine, "odd-again").classes) == len(labels)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/../../b", ".git", "x" * 500, "a\x00b", "con\nsole"])
def test_safe_name_is_one_visible_component(name):
    safe = safe_name(name)
    assert safe and not safe.startswith(".") and "/" not in safe and "\x00" not in safe and len(safe) <= 120


def test_a_non_empty_out_is_refused_and_left_alone(tmp_path, engine, shapes):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty"):
        export_dataset(load(engine, shapes), out, fmt="folder")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        export_dataset(load(engine, shapes), tmp_path / "file", fmt="folder")
    (tmp_path / "empty").mkdir()
    assert export_dataset(load(engine, shapes), tmp_path / "empty", fmt="folder").images == 42


def test_a_failure_leaves_nothing(tmp_path, engine, shapes, monkeypatch):
    from snapid.data import export_layouts

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setitem(export_layouts.WRITERS, "yolo", broken)
    with pytest.raises(OSError):
        export_dataset(load(engine, shapes), tmp_path / "out", fmt="yolo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "shapes"]


def test_changed_and_missing_files_are_left_out_and_counted(tmp_path, engine, shapes):
    manifest = load(engine, shapes)
    root = Path(manifest.root)
    (root / manifest.samples[0].path).write_bytes(b"not the imported photo")
    (root / manifest.samples[1].path).unlink()
    report = export_dataset(manifest, tmp_path / "out", fmt="csv")
    assert report.images == 40
    assert report.skipped == {"changed since the import (sha256 differs)": 1, "missing": 1}


def test_link_shares_the_files(tmp_path, engine, shapes):
    manifest = load(engine, shapes)
    export_dataset(manifest, tmp_path / "out", fmt="folder", link=True)
    sample = manifest.samples[0]
    source = os.stat(Path(manifest.root) / sample.path)
    copies = [p for p in (tmp_path / "out").rglob("*.png") if os.stat(p).st_ino == source.st_ino]
    assert len(copies) == 1


def test_unknown_format_and_split_are_refused(engine, shapes, tmp_path):
    with pytest.raises(DatasetError, match="expected one of"):
        export_dataset(load(engine, shapes), tmp_path / "out", fmt="tfrecord")
    with pytest.raises(DatasetError, match="--split"):
        export_dataset(load(engine, shapes), tmp_path / "out", fmt="csv", splits=["holdout"])
    assert set(FORMATS) == {"folder", "csv", "coco", "yolo", "voc"}


def test_the_command(tmp_path, engine, shapes):
    from snapid.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["data", "export", shapes, "--format", "yolo", "--out", str(tmp_path / "y"),
                               "--split", "train", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["format"] == "yolo" and set(report["splits"]) == {"train"}
    assert (tmp_path / "y" / "data.yaml").is_file()
    again = runner.invoke(app, ["data", "export", shapes, "--format", "yolo", "--out", str(tmp_path / "y")])
    assert again.exit_code != 0
