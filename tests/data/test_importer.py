"""`snapid data import` as a library call: versions, reuse, bad files, boxes, splits, real sets."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from snapid.errors import AnnotationError, DatasetError, NotFound
from snapid.importer import import_dataset
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from tests.conftest import encode, photo, shared_dataset, write_image


def make_folder(root: Path, classes=("cat", "dog"), per_class=10, size=(80, 60)) -> Path:
    for c, label in enumerate(classes):
        for i in range(per_class):
            write_image(root / label / f"{i}.jpg", size, seed=c * 100 + i)
    return root


def manifest(engine, name, version=None):
    with transaction(engine) as session:
        return dataset_store.load_manifest(session, name=name, version=version)


def test_folder_import_makes_a_versioned_manifest(tmp_path, engine):
    root = make_folder(tmp_path / "pets")
    report = import_dataset(root, name="pets", engine=engine)
    assert (report.version, report.images, report.classes, report.format) == (1, 20, 2, "folder")
    m = manifest(engine, "pets")
    assert [c.id for c in m.classes] == ["cat", "dog"]
    s = m.samples[0]
    assert s.path == "cat/0.jpg" and s.facts.width == 80 and s.facts.height == 60 and len(s.facts.sha256) == 64
    assert Counter(x.split for x in m.samples) == {"train": 16, "val": 2, "test": 2}
    assert "detected" in report.notes[0]
    again = import_dataset(root, name="pets", engine=engine)
    assert again.version == 2 and again.reused == 20


def test_changed_file_is_read_again(tmp_path, engine):
    root = make_folder(tmp_path / "pets", per_class=3)
    import_dataset(root, name="pets", engine=engine)
    write_image(root / "cat" / "0.jpg", (100, 70), seed=99)
    report = import_dataset(root, name="pets", engine=engine)
    assert report.reused == 5
    assert next(s for s in manifest(engine, "pets").samples if s.path == "cat/0.jpg").facts.width == 100


def test_bad_files_are_rejected_with_a_reason_and_never_crash(tmp_path, engine):  # BAD_INPUTS: dataset rows
    root = make_folder(tmp_path / "pets", per_class=5)
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "text.jpg").write_text("not a picture at all")
    (root / "dog" / "cut.jpg").write_bytes(encode(photo((200, 150)), "JPEG")[:600])
    (root / "dog" / "tiny.png").write_bytes(encode(photo((8, 8)), "PNG"))
    (root / "dog" / "pic.tiff").write_bytes(encode(photo(), "TIFF"))
    os.symlink("/etc/passwd", root / "cat" / "passwd.jpg")
    os.symlink(root / "cat" / "loop.jpg", root / "cat" / "loop.jpg")
    os.symlink(root / "cat" / "missing.jpg", root / "dog" / "dangling.jpg")
    os.symlink(root / "cat" / "0.jpg", root / "dog" / "alias.jpg")  # inside the root: followed
    report = import_dataset(root, name="pets", engine=engine)
    assert report.images == 11
    assert report.rejected == {"empty_file": 1, "unsupported_image": 2, "corrupt_image": 1, "image_too_small": 1,
                               "outside_root": 1, "unreadable": 2}
    m = manifest(engine, "pets")
    reasons = {r.path: r.reason for r in m.rejected}
    assert reasons["cat/passwd.jpg"] == "outside_root"
    assert reasons["dog/cut.jpg"] == "corrupt_image"
    assert any("more than 1%" in n for n in report.notes)


def test_unreadable_file_is_rejected(tmp_path):  # BAD_INPUTS: unreadable (chmod 000) file
    """Read as an unprivileged user (root reads chmod-000 files), in a forked child."""
    from snapid.data.facts import image_facts
    from snapid.images import DEFAULT_LIMITS

    tmp_path.chmod(0o755)
    locked = write_image(tmp_path / "locked.jpg")
    locked.chmod(0)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, report the reason code, exit without cleanup
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            outcome = image_facts(locked, "locked.jpg", DEFAULT_LIMITS)
            os.write(write_end, getattr(outcome, "reason", "read").encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 100).decode() == "unreadable"


def test_symlinked_folder_outside_root_is_not_followed(tmp_path, engine):
    outside = make_folder(tmp_path / "elsewhere", classes=("secret",), per_class=3)
    root = make_folder(tmp_path / "pets", per_class=3)
    os.symlink(outside / "secret", root / "secret")
    report = import_dataset(root, name="pets", engine=engine)
    assert report.classes == 2 and report.images == 6


def test_csv_paths_leaving_the_root_are_refused(tmp_path, engine):
    write_image(tmp_path / "outside.jpg")
    root = make_folder(tmp_path / "data", per_class=3)
    rows = ["path,label"] + [f"{c}/{i}.jpg,{c}" for c in ("cat", "dog") for i in range(3)] + ["../outside.jpg,cat"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    report = import_dataset(root / "labels.csv", name="csvset", engine=engine)
    assert report.images == 6 and report.rejected == {"outside_root": 1}


def _csv_with_box(root: Path, box: str) -> Path:
    for i in range(4):
        write_image(root / f"{i}.jpg", (100, 80), seed=i)
    lines = ["path,label,x1,y1,x2,y2"] + [f"{i}.jpg,pill,10,10,50,50" for i in range(3)] + [f"3.jpg,pill,{box}"]
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root / "boxes.csv"


def test_box_outside_the_image_names_file_and_line(tmp_path, engine):
    csv = _csv_with_box(tmp_path / "d", "10,10,150,50")
    with pytest.raises(AnnotationError) as err:
        import_dataset(csv, name="boxes", engine=engine)
    assert "boxes.csv:5" in err.value.message and "--clip-boxes" in err.value.message


def test_clip_boxes_clips_and_reports(tmp_path, engine):
    csv = _csv_with_box(tmp_path / "d", "10,10,150,50")
    import_dataset(csv, name="boxes", engine=engine, clip_boxes=True)
    sample = next(s for s in manifest(engine, "boxes").samples if s.path == "3.jpg")
    assert sample.boxes[0].x2 == 100 and "clipped" in sample.box_notes[0]


def test_failed_import_leaves_the_previous_version_intact(tmp_path, engine):
    csv = _csv_with_box(tmp_path / "d", "10,10,50,50")
    import_dataset(csv, name="boxes", engine=engine)
    _csv_with_box(tmp_path / "d", "10,10,150,50")
    with pytest.raises(AnnotationError):
        import_dataset(csv, name="boxes", engine=engine)
    m = manifest(engine, "boxes")
    assert m.version == 1 and len(m.samples) == 4
    with pytest.raises(NotFound):
        manifest(engine, "boxes", version=2)


def test_max_per_class_subsamples(tmp_path, engine):
    root = make_folder(tmp_path / "pets", per_class=12)
    report = import_dataset(root, name="pets", engine=engine, max_per_class=5)
    assert report.images == 10
    assert Counter(s.label for s in manifest(engine, "pets").samples) == {"cat": 5, "dog": 5}


def test_groups_stay_in_one_split(tmp_path, engine):
    root = tmp_path / "obs"
    lines = ["path,label,group"]
    for i in range(60):
        write_image(root / f"{i}.jpg", seed=i)
        lines.append(f"{i}.jpg,{'ab'[i % 2]},obs{i // 4}")
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    import_dataset(root / "m.csv", name="obs", engine=engine)
    splits_by_group: dict[str, set] = {}
    for s in manifest(engine, "obs").samples:
        splits_by_group.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in splits_by_group.values())


def test_yolo_boxes_become_pixels(tmp_path, engine):
    root = tmp_path / "y"
    write_image(root / "images" / "a.jpg", (200, 100))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.4\n")
    (root / "classes.txt").write_text("pill\n")
    import_dataset(root, name="y", engine=engine)
    box = manifest(engine, "y").samples[0].boxes[0]
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((50, 30, 150, 70))


def test_unknown_format_and_bad_name(tmp_path, engine):
    root = make_folder(tmp_path / "pets", per_class=2)
    with pytest.raises(DatasetError) as err:
        import_dataset(root, name="pets", engine=engine, fmt="parquet")
    assert "parquet" in err.value.message
    with pytest.raises(DatasetError):
        import_dataset(root, name="../etc", engine=engine)


def test_every_file_rejected_is_an_error(tmp_path, engine):
    (tmp_path / "d" / "cat").mkdir(parents=True)
    (tmp_path / "d" / "cat" / "a.jpg").write_text("nope")
    with pytest.raises(DatasetError) as err:
        import_dataset(tmp_path / "d", name="d", engine=engine)
    assert "rejected" in err.value.message


def test_parallel_import_matches_serial(tmp_path, engine):
    root = make_folder(tmp_path / "pets", per_class=50, size=(64, 48))
    serial = import_dataset(root, name="serial", engine=engine, workers=1)
    parallel = import_dataset(root, name="parallel", engine=engine, workers=2)
    a, b = manifest(engine, "serial"), manifest(engine, "parallel")
    assert serial.images == parallel.images == 100
    assert [(s.path, s.split, s.facts.sha256, s.facts.phash) for s in a.samples] == \
           [(s.path, s.split, s.facts.sha256, s.facts.phash) for s in b.samples]


def test_real_flowers12_folder_layout(engine):
    root = shared_dataset("flowers12")
    report = import_dataset(root, name="flowers", engine=engine, workers=2)
    assert report.format == "folder" and report.images == 960 and report.classes == 12
    assert report.splits == {"test": 240, "train": 648, "val": 72}


def test_real_fruits_voc_with_quirks(engine):
    root = shared_dataset("fruits")
    report = import_dataset(root, name="fruits", engine=engine, workers=2)
    assert report.format == "voc" and report.images == 300 and report.rejected == {}
    m = manifest(engine, "fruits")
    assert {c.id for c in m.classes} == {"apple", "banana", "orange"}
    assert all(s.facts.width > 0 and s.facts.height > 0 for s in m.samples)   # 37 XMLs say size 0
    assert sum(len(s.boxes) for s in m.samples) > 300
    assert any(s.facts.mode in ("RGBA", "P") for s in m.samples)             # converted when used
    for s in m.samples:
        for b in s.boxes:
            assert 0 <= b.x1 < b.x2 <= s.facts.width and 0 <= b.y1 < b.y2 <= s.facts.height


def _manifest_rows(root: Path, fmt: str, rows: list[tuple[str, str]]) -> Path:
    """A CSV, JSON or COCO manifest beside the photos listing ``rows`` (path, label)."""
    import json

    if fmt == "csv":
        (root / "labels.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
        return root / "labels.csv"
    if fmt == "json":
        (root / "labels.json").write_text(json.dumps([{"path": p, "label": c} for p, c in rows]))
        return root / "labels.json"
    cats = sorted({c for _, c in rows})
    doc = {"images": [{"id": i, "file_name": p} for i, (p, _) in enumerate(rows, 1)],
           "annotations": [{"id": i, "image_id": i, "category_id": cats.index(c) + 1, "bbox": [2, 2, 20, 20]}
                           for i, (_, c) in enumerate(rows, 1)],
           "categories": [{"id": i, "name": c} for i, c in enumerate(cats, 1)]}
    (root / "coco.json").write_text(json.dumps(doc))
    return root / "coco.json"


@pytest.mark.parametrize("fmt", ["csv", "json", "coco"])
def test_a_row_through_a_symlinked_folder_outside_the_root_is_refused(tmp_path, engine, fmt):
    """BAD_INPUTS, dataset row: "a symlink to /etc/passwd or outside the root ... links leaving the root are never
    followed". The row names linkdir/x.jpg, where linkdir (not x.jpg) is the link: every path is resolved in full."""
    write_image(tmp_path / "elsewhere" / "x.jpg", (80, 60), seed=7)
    root = make_folder(tmp_path / "data", per_class=3)
    os.symlink(tmp_path / "elsewhere", root / "linkdir")
    os.symlink(root / "cat", root / "catlink")   # a folder link that stays inside the root is followed
    rows = [(f"{c}/{i}.jpg", c) for c in ("cat", "dog") for i in range(3)]
    manifest_file = _manifest_rows(root, fmt, rows + [("catlink/0.jpg", "cat"), ("linkdir/x.jpg", "cat")])
    report = import_dataset(manifest_file, name=f"link-{fmt}", engine=engine)
    assert report.images == 7 and report.rejected == {"outside_root": 1}
    m = manifest(engine, f"link-{fmt}")
    assert {r.path: r.reason for r in m.rejected} == {"linkdir/x.jpg": "outside_root"}
    assert "linkdir/x.jpg" not in {s.path for s in m.samples}


def test_a_linked_plantnet_images_folder_outside_the_root_is_refused(tmp_path, engine):
    """BAD_INPUTS, dataset row: Pl@ntNet's images/ folder is walked by name; when it is a link that leaves the root,
    none of the photos under it are imported."""
    for i in range(3):
        write_image(tmp_path / "elsewhere" / "train" / "1355936" / f"{i}.jpg", (80, 60), seed=i)
    root = tmp_path / "plants"
    root.mkdir()
    (root / "plantnet300K_species_id_2_name.json").write_text('{"1355936": "Lactuca virosa"}')
    os.symlink(tmp_path / "elsewhere", root / "images")
    with pytest.raises(DatasetError, match=r"every one of the 3 files was rejected \(3 outside_root\)"):
        import_dataset(root, name="plants", engine=engine)


def test_the_folder_walker_never_enters_a_linked_folder(tmp_path, engine):
    """BAD_INPUTS, dataset row: class folders are walked without following folder links, even one that stays inside
    (it would list the same photos twice)."""
    root = make_folder(tmp_path / "pets", per_class=3)
    os.symlink(root / "cat", root / "dog" / "more")
    write_image(tmp_path / "elsewhere" / "deep" / "x.jpg")
    os.symlink(tmp_path / "elsewhere", root / "cat" / "out")
    report = import_dataset(root, name="pets", engine=engine)
    assert report.images == 6 and report.rejected == {}
