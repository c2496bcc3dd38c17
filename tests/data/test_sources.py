"""Format readers and detection, on tiny generated datasets (real PNG/JPEG files) and the shared real sets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from snapid.data.manifest import Box
from snapid.data.sources import ReadOptions
from snapid.data.sources.common import ImageIndex, rel_path, walk_files
from snapid.data.sources.formats import detect_format, read_source
from snapid.errors import AnnotationError, DatasetError, NotFound
from tests.conftest import SHARED_DATASETS as SHARED  # noqa: E402


def img(path: Path, size=(40, 30), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "PNG" if path.suffix.lower() == ".png" else "JPEG")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_path(source) -> dict:
    return {e.path: e for e in source.entries}


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path


# --- common -------------------------------------------------------------------------------
def test_walk_files_sorted_skips_hidden_and_symlinked_dirs(tmp_path):
    img(tmp_path / "b" / "2.jpg")
    img(tmp_path / "a" / "1.jpg")
    img(tmp_path / ".hidden" / "x.jpg")
    img(tmp_path / "a" / ".x.jpg")
    outside = img(tmp_path.parent / f"{tmp_path.name}-out" / "o.jpg")
    (tmp_path / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    (tmp_path / "a" / "link.jpg").symlink_to(outside)
    assert list(walk_files(tmp_path)) == ["a/1.jpg", "a/link.jpg", "b/2.jpg"]


def test_rel_path_and_image_index(tmp_path):
    assert rel_path(tmp_path, tmp_path / "x" / "y.jpg") == "x/y.jpg"
    assert rel_path(tmp_path, "x\\y.jpg") == "x/y.jpg"
    assert rel_path(tmp_path, "./x/../x/y.jpg") == "x/y.jpg"
    index = ImageIndex(["a/p.JPG", "b/p.png", "a/q.txt"])
    assert index.find_stem("a", "p") == "a/p.JPG" and index.find_stem("a", "q") is None
    with pytest.raises(AnnotationError, match="ambiguous"):
        ImageIndex(["a/p.jpg", "b/p.jpg"]).find_name("p.jpg", "x.json")


# --- folder -------------------------------------------------------------------------------
def test_folder_with_splits(tmp_path):
    for split in ("train", "valid", "test"):
        for cls in ("cat", "dog"):
            img(tmp_path / split / cls / f"{cls}1.jpg")
    write(tmp_path / "train" / "cat" / "notes.txt", "not an image")
    write(tmp_path / "train" / "dog" / "fake.jpg", "a text file named .jpg")   # the decoder rejects it later
    img(tmp_path / "train" / "dog" / ".hidden.jpg")
    img(tmp_path / "stray.jpg")
    src = read_source(tmp_path, "folder")
    entries = by_path(src)
    assert entries["valid/cat/cat1.jpg"].split == "val" and entries["valid/cat/cat1.jpg"].label == "cat"
    assert "train/dog/fake.jpg" in entries
    assert not any("notes.txt" in p or ".hidden" in p or p == "stray.jpg" for p in entries)
    assert [c.id for c in src.classes] == ["cat", "dog"]
    assert any("outside any class folder" in n for n in src.notes)
    assert detect_format(tmp_path)[0] == "folder"


def test_folder_without_splits_keeps_a_class_named_train(tmp_path):
    img(tmp_path / "train" / "t.jpg")     # a class of railway trains, beside another class
    img(tmp_path / "bus" / "b.jpg")
    src = read_source(tmp_path, "folder")
    assert {(e.label, e.split) for e in src.entries} == {("train", None), ("bus", None)}


# --- csv ----------------------------------------------------------------------------------
def test_csv_with_boxes_bom_and_semicolons(tmp_path):
    img(tmp_path / "imgs" / "a.jpg")
    img(tmp_path / "imgs" / "b.jpg")
    (tmp_path / "labels.csv").write_bytes(
        "\ufeffpath;label;split;group;x1;y1;x2;y2\n"
        "imgs/a.jpg;cat;training;g1;1;2;10;20\n"
        "imgs/a.jpg;dog;training;g1;5;5;8;8\n"
        "imgs/b.jpg;0012;test;;;;;\n".encode("utf-8"))
    src = read_source(tmp_path / "labels.csv")
    a, b = by_path(src)["imgs/a.jpg"], by_path(src)["imgs/b.jpg"]
    assert a.boxes == [Box(1, 2, 10, 20, "cat"), Box(5, 5, 8, 8, "dog")] and a.label is None
    assert (a.split, a.group) == ("train", "g1")
    assert (b.label, b.split, b.boxes, b.group) == ("0012", "test", [], None)
    assert src.root == tmp_path


def test_csv_column_mapping_and_header_less(tmp_path):
    img(tmp_path / "x.jpg")
    write(tmp_path / "named.csv", "filename,species,extra\nx.jpg,rosa,1\n")
    src = read_source(tmp_path / "named.csv", "csv", ReadOptions(columns={"path": "filename", "label": "species"}))
    assert [(e.path, e.label) for e in src.entries] == [("x.jpg", "rosa")]
    write(tmp_path / "bare.tsv", "1\tx.jpg\tval\tlily\n")
    opts = ReadOptions(columns={"path": "1", "label": 3, "split": "2"})
    src = read_source(tmp_path / "bare.tsv", "csv", opts)
    assert [(e.path, e.label, e.split) for e in src.entries] == [("x.jpg", "lily", "val")]
    write(tmp_path / "guess.csv", "x.jpg,tulip\n")   # no known column name: no header
    assert [e.label for e in read_source(tmp_path / "guess.csv").entries] == ["tulip"]


def test_csv_errors(tmp_path):
    write(tmp_path / "nolabel.csv", "path,colour\na.jpg,red\n")
    with pytest.raises(AnnotationError, match=r"nolabel\.csv.*no label column.*columns found: path, colour"):
        read_source(tmp_path / "nolabel.csv")
    write(tmp_path / "empty.csv", "path,label\na.jpg,cat\nb.jpg,\n")
    with pytest.raises(AnnotationError, match=r"empty\.csv:3: empty label"):
        read_source(tmp_path / "empty.csv")
    write(tmp_path / "clash.csv", "path,label\na.jpg,cat\na.jpg,dog\n")
    with pytest.raises(AnnotationError, match=r"clash\.csv:3"):
        read_source(tmp_path / "clash.csv")
    with pytest.raises(DatasetError, match="unknown column"):
        read_source(tmp_path / "clash.csv", "csv", ReadOptions(columns={"colour": "x"}))


def test_csv_detected_in_a_folder(tmp_path):
    img(tmp_path / "pics" / "a.jpg")
    write(tmp_path / "data.csv", "image,label\npics/a.jpg,cat\n")
    assert detect_format(tmp_path)[0] == "csv"
    assert detect_format(tmp_path / "data.csv")[0] == "csv"
    assert read_source(tmp_path).entries[0].path == "pics/a.jpg"


# --- json ---------------------------------------------------------------------------------
def test_json_samples_classes_and_mapping(tmp_path):
    img(tmp_path / "a.jpg")
    img(tmp_path / "b.jpg")
    data = {"classes": [{"id": "0012", "name": "Rosa", "display_names": {"ko": "장미"}}, "10"],
            "samples": [{"file": "a.jpg", "species": "0012", "split": "val", "boxes": [[1, 2, 3, 4]]},
                        {"file": "b.jpg", "species": 10}]}
    write(tmp_path / "m.json", json.dumps(data))
    src = read_source(tmp_path / "m.json", "auto", ReadOptions(columns={"label": "species"}))
    assert src.format == "json"
    a, b = by_path(src)["a.jpg"], by_path(src)["b.jpg"]
    assert (a.label, a.split, a.boxes) == ("0012", "val", [Box(1, 2, 3, 4, "0012")])
    assert b.label == "10"
    assert [(c.id, c.name) for c in src.classes] == [("0012", "Rosa"), ("10", "10")]
    assert src.classes[0].display_names == {"ko": "장미"}


def test_jsonl_and_errors(tmp_path):
    img(tmp_path / "a.jpg")
    write(tmp_path / "m.jsonl", '{"path": "a.jpg", "label": "x"}\n\n{"path": "a.jpg", "label": ""}\n')
    with pytest.raises(AnnotationError, match=r"m\.jsonl:3: empty label"):
        read_source(tmp_path / "m.jsonl")
    write(tmp_path / "ok.jsonl", '{"path": "a.jpg", "label": "x"}\n')
    assert detect_format(tmp_path / "ok.jsonl")[0] == "json"
    assert read_source(tmp_path / "ok.jsonl").entries[0].label == "x"
    write(tmp_path / "bad.json", '[{"path": "a.jpg",\n "label": }]')
    with pytest.raises(AnnotationError, match=r"bad\.json:2: invalid JSON"):
        read_source(tmp_path / "bad.json", "json")
    write(tmp_path / "nolabel.json", '[{"path": "a.jpg"}]')
    with pytest.raises(AnnotationError, match=r"nolabel\.json.*no label"):
        read_source(tmp_path / "nolabel.json")


# --- plantnet -----------------------------------------------------------------------------
def make_plantnet(root: Path) -> None:
    img(root / "images" / "train" / "1355936" / "p1.jpg")
    img(root / "images" / "train" / "1355936" / "p2.jpg")
    img(root / "images" / "val" / "0012" / "p3.jpg")
    img(root / "images" / "test" / "9" / "p4.jpg")
    img(root / "images" / "test" / "10" / "p5.jpg")    # not in the metadata
    meta = {"p1": {"species_id": "1355936", "split": "train", "obs_id": "obs-A", "organ": "leaf"},
            "p2": {"species_id": "1355936", "split": "train", "obs_id": "obs-A"},
            "p3": {"species_id": "0012", "split": "val", "obs_id": "obs-B"},
            "p4": {"species_id": "9", "split": "test", "obs_id": "obs-C"}}
    write(root / "plantnet300K_metadata.json", json.dumps(meta))
    names = {"9": "Acer campestre", "1355936": "Rosa canina", "0012": "Bellis perennis", "10": "Ilex"}
    write(root / "plantnet300K_species_id_2_name.json", json.dumps(names))


def test_plantnet(tmp_path):
    make_plantnet(tmp_path)
    assert detect_format(tmp_path)[0] == "plantnet"
    src = read_source(tmp_path)
    entries = by_path(src)
    p1 = entries["images/train/1355936/p1.jpg"]
    assert (p1.label, p1.split, p1.group) == ("1355936", "train", "obs-A")
    assert entries["images/val/0012/p3.jpg"].label == "0012"
    p5 = entries["images/test/10/p5.jpg"]
    assert (p5.label, p5.split, p5.group) == ("10", "test", None)
    assert [c.id for c in src.classes] == ["9", "1355936", "0012", "10"]     # names-file order
    assert src.classes[1].name == "Rosa canina"
    assert any("1 images missing from the metadata" in n for n in src.notes)


def test_plantnet_without_names_sorts_ids_as_strings(tmp_path):
    for species in ("9", "10", "0012"):
        img(tmp_path / "train" / species / f"{species}.jpg")
    write(tmp_path / "my_metadata.csv", "image_id,species_id,split,obs_id\n9,9,train,o1\n")
    src = read_source(tmp_path, "plantnet")
    assert [c.id for c in src.classes] == ["0012", "10", "9"]
    assert by_path(src)["train/9/9.jpg"].group == "o1"


# --- coco ---------------------------------------------------------------------------------
def coco_doc(file_names: list[str]) -> dict:
    return {
        "images": [{"id": i + 1, "file_name": n, "width": 40, "height": 30} for i, n in enumerate(file_names)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 3, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 4, 5.5, 6]},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [1, 1, 4, 4]},
            {"id": 4, "image_id": 2, "category_id": 7, "bbox": [5, 5, 4, 4]},
            {"id": 5, "image_id": 2, "category_id": 7, "bbox": [0, 0, 40, 30], "iscrowd": 1},
        ],
        "categories": [{"id": 7, "name": "pear"}, {"id": 3, "name": "apple"}],
    }


def test_coco_file_with_images_folder(tmp_path):
    img(tmp_path / "images" / "a.jpg")
    img(tmp_path / "images" / "sub" / "b.jpg")
    img(tmp_path / "images" / "c.jpg")
    write(tmp_path / "ann.json", json.dumps(coco_doc(["a.jpg", "sub/b.jpg", "c.jpg"])))
    assert detect_format(tmp_path / "ann.json")[0] == "coco"
    assert detect_format(tmp_path)[0] == "coco"
    src = read_source(tmp_path / "ann.json")
    a, b, c = (by_path(src)[p] for p in ("images/a.jpg", "images/sub/b.jpg", "images/c.jpg"))
    assert a.boxes == [Box(2, 3, 12, 8, "3"), Box(20, 4, 25.5, 10, "3")] and a.label == "3"
    assert len(b.boxes) == 2 and b.label is None            # two categories, crowd box skipped
    assert c.boxes == [] and c.label is None
    assert [(k.id, k.name) for k in src.classes] == [("7", "pear"), ("3", "apple")]
    assert any("crowd" in n for n in src.notes)


def test_coco_split_folders(tmp_path):
    for split in ("train", "valid"):
        img(tmp_path / split / "a.jpg")
        img(tmp_path / split / "b.jpg")
        write(tmp_path / split / "_annotations.coco.json", json.dumps(coco_doc(["a.jpg", "b.jpg"])))
    src = read_source(tmp_path)
    assert src.format == "coco" and src.root == tmp_path
    assert {(e.path, e.split) for e in src.entries} >= {("train/a.jpg", "train"), ("valid/b.jpg", "val")}


def test_coco_2017_layout(tmp_path):
    for split in ("train2017", "val2017"):
        img(tmp_path / split / "a.jpg")
        img(tmp_path / split / "b.jpg")
        write(tmp_path / "annotations" / f"instances_{split}.json", json.dumps(coco_doc(["a.jpg", "b.jpg"])))
    src = read_source(tmp_path)
    assert {(e.path, e.split) for e in src.entries} == {
        ("train2017/a.jpg", "train"), ("train2017/b.jpg", "train"), ("val2017/a.jpg", "val"), ("val2017/b.jpg", "val")}
    one = read_source(tmp_path / "annotations" / "instances_val2017.json")   # the root widens to hold the images
    assert one.root == tmp_path and {e.path for e in one.entries} == {"val2017/a.jpg", "val2017/b.jpg"}


def test_coco_bad_bbox(tmp_path):
    doc = coco_doc(["a.jpg"])
    doc["annotations"] = [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 2]}]
    write(tmp_path / "ann.json", json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"ann\.json.*id 9.*bbox"):
        read_source(tmp_path / "ann.json", "coco")


# --- voc ----------------------------------------------------------------------------------
def voc_xml(filename: str, objects: list[tuple], size=(0, 0)) -> str:
    objs = "".join(f"<object><name> {n} </name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                   f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height></size>{objs}</annotation>")


def test_voc_beside_images_with_splits(tmp_path):
    img(tmp_path / "train" / "a.jpg")
    write(tmp_path / "train" / "a.xml", voc_xml("a.jpg", [("apple", 1, 2, 10.5, 20), ("apple", 3, 3, 5, 5)]))
    img(tmp_path / "train" / "m.jpg")
    write(tmp_path / "train" / "m.xml", voc_xml("m.jpg", [("apple", 1, 1, 4, 4), ("pear", 2, 2, 6, 6)]))
    img(tmp_path / "test" / "b.png")
    write(tmp_path / "test" / "b.xml", voc_xml("b.png", [("pear", 0, 0, 9, 9)]))
    img(tmp_path / "test" / "loose.jpg")
    assert detect_format(tmp_path)[0] == "voc"
    src = read_source(tmp_path)
    entries = by_path(src)
    a = entries["train/a.jpg"]
    assert (a.label, a.split) == ("apple", "train")
    assert a.boxes == [Box(1, 2, 10.5, 20, "apple"), Box(3, 3, 5, 5, "apple")]
    assert entries["train/m.jpg"].label is None and entries["test/b.png"].label == "pear"
    assert entries["test/loose.jpg"].label is None
    assert any("without an XML" in n for n in src.notes)
    assert [c.id for c in src.classes] == ["apple", "pear"]


def test_voc_devkit_layout(tmp_path):
    for stem, split in (("001", "train"), ("002", "val")):
        img(tmp_path / "JPEGImages" / f"{stem}.jpg")
        write(tmp_path / "Annotations" / f"{stem}.xml", voc_xml(f"{stem}.jpg", [("dog", 1, 1, 5, 5)]))
        write(tmp_path / "ImageSets" / "Main" / f"{split}.txt", f"{stem}\n")
    assert detect_format(tmp_path)[0] == "voc"
    src = read_source(tmp_path, "voc")
    assert {(e.path, e.split, e.label) for e in src.entries} == {
        ("JPEGImages/001.jpg", "train", "dog"), ("JPEGImages/002.jpg", "val", "dog")}


def test_voc_rejects_doctype_and_bad_boxes(tmp_path):
    img(tmp_path / "a.jpg")
    write(tmp_path / "a.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]>' + voc_xml("a.jpg", []))
    with pytest.raises(AnnotationError, match=r"a\.xml: XML with a DOCTYPE"):
        read_source(tmp_path, "voc")
    write(tmp_path / "a.xml", voc_xml("a.jpg", [("dog", "one", 1, 5, 5)]))
    with pytest.raises(AnnotationError, match=r"a\.xml.*object 1 \(dog\)"):
        read_source(tmp_path, "voc")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_voc_refuses_entities_in_any_encoding(tmp_path, encoding):
    """A DOCTYPE that declares entities (billion laughs, small here) is refused whatever the bytes' encoding: a
    UTF-16 file hides "<!DOCTYPE" from a byte search, and the parser must refuse it itself."""
    img(tmp_path / "a.jpg")
    doctype = ('<!DOCTYPE annotation [<!ENTITY a "dog"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
               '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>')
    text = f'<?xml version="1.0" encoding="UTF-16"?>{doctype}' + voc_xml("a.jpg", [("&c;", 1, 1, 5, 5)])
    (tmp_path / "a.xml").write_bytes(("\ufeff" + text).encode(encoding))
    with pytest.raises(AnnotationError, match=r"a\.xml: XML with a DOCTYPE or entity declarations is refused"):
        read_source(tmp_path, "voc")


def test_voc_names_the_file_of_invalid_xml(tmp_path):
    img(tmp_path / "a.jpg")
    write(tmp_path / "a.xml", "<annotation><object>")
    with pytest.raises(AnnotationError, match=r"a\.xml:1: invalid XML"):
        read_source(tmp_path, "voc")
    (tmp_path / "a.xml").write_bytes('<?xml version="1.0" encoding="UTF-16-BE"?><annotation/>'.encode("utf-16-be"))
    with pytest.raises(AnnotationError, match=r"a\.xml: invalid XML"):   # an encoding the parser cannot read
        read_source(tmp_path, "voc")


# --- yolo ---------------------------------------------------------------------------------
def make_yolo(root: Path) -> None:
    img(root / "images" / "train" / "a.jpg")
    img(root / "images" / "val" / "b.png")
    img(root / "images" / "val" / "c.jpg")        # no label file: background
    write(root / "labels" / "train" / "a.txt", "1 0.5 0.5 0.2 0.4\n\n1 0.25 0.25 0.1 0.1\n")
    write(root / "labels" / "val" / "b.txt", "0 0.5 0.5 1 1\n1 0.1 0.1 0.1 0.1\n")
    write(root / "data.yaml", "train: images/train\nval: images/val\nnames: [cat, dog]\n")


def test_yolo(tmp_path):
    make_yolo(tmp_path)
    assert detect_format(tmp_path)[0] == "yolo"
    src = read_source(tmp_path)
    entries = by_path(src)
    a = entries["images/train/a.jpg"]
    assert a.boxes_normalized and a.split == "train" and a.label == "1"
    assert a.boxes[0] == Box(pytest.approx(0.4), pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.7), "1")
    assert entries["images/val/b.png"].label is None and entries["images/val/c.jpg"].boxes == []
    assert [(c.id, c.name) for c in src.classes] == [("0", "cat"), ("1", "dog")]
    assert read_source(tmp_path / "data.yaml").format == "yolo"


def test_yolo_names_file_and_roboflow_layout(tmp_path):
    img(tmp_path / "valid" / "images" / "x.jpg")
    write(tmp_path / "valid" / "labels" / "x.txt", "2 0.5 0.5 0.5 0.5\n")
    write(tmp_path / "obj.names", "a\nb\nc\n")
    src = read_source(tmp_path)
    assert src.format == "yolo"
    (e,) = src.entries
    assert (e.path, e.split, e.label) == ("valid/images/x.jpg", "val", "2")
    assert src.classes[2].name == "c"


def test_yolo_bad_line_names_file_and_line(tmp_path):
    make_yolo(tmp_path)
    write(tmp_path / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.4\n0 0.5 oops 0.2 0.4\n")
    with pytest.raises(AnnotationError, match=r"labels/train/a\.txt:2"):
        read_source(tmp_path, "yolo")
    write(tmp_path / "labels" / "train" / "a.txt", "5 0.5 0.5 0.2 0.4\n")
    with pytest.raises(AnnotationError, match=r"a\.txt:1: bad class index"):
        read_source(tmp_path, "yolo")


# --- aihub --------------------------------------------------------------------------------
def aihub_doc(file_name: str, cat: int, bbox: list, **extra) -> dict:
    return {"images": [{"file_name": file_name, "width": 40, "height": 30, "dl_name": "x"}],
            "annotations": [{"bbox": bbox, "category_id": cat, "id": 1}],
            "categories": [{"id": cat, "name": f"약 {cat}", "supercategory": "pill"}], **extra}


def test_aihub(tmp_path):
    img(tmp_path / "1.Training" / "images" / "K-001_0.png")
    img(tmp_path / "1.Training" / "images" / "K-001-002_0.png")
    img(tmp_path / "Validation" / "K-003_0.png")
    labels = tmp_path / "1.Training" / "labels"
    write(labels / "K-001" / "K-001_0.json", json.dumps(aihub_doc("K-001_0.png", 1899, [1, 2, 10, 20])))
    # one JSON per pill of a combination image: merged into one entry
    write(labels / "K-001" / "K-001-002_0.json", json.dumps(aihub_doc("K-001-002_0.png", 1899, [0, 0, 5, 5])))
    write(labels / "K-002" / "K-001-002_0.json",
          json.dumps(aihub_doc("K-001-002_0.png", 2, [5, 5, 9, 9], bbox_format="xyxy")))
    write(tmp_path / "Validation" / "K-003_0.json", json.dumps(aihub_doc("K-003_0.png", 1899, [0, 0, 1, 1])))
    assert detect_format(tmp_path)[0] == "aihub"
    src = read_source(tmp_path)
    entries = by_path(src)
    one = entries["1.Training/images/K-001_0.png"]
    assert (one.label, one.split, one.boxes) == ("1899", "train", [Box(1, 2, 11, 22, "1899")])
    combo = entries["1.Training/images/K-001-002_0.png"]
    assert combo.label is None and combo.boxes == [Box(0, 0, 5, 5, "1899"), Box(5, 5, 9, 9, "2")]
    assert entries["Validation/K-003_0.png"].split == "val"
    assert [(c.id, c.name) for c in src.classes] == [("1899", "약 1899"), ("2", "약 2")]


def test_aihub_ambiguous_basename(tmp_path):
    img(tmp_path / "a" / "K.png")
    img(tmp_path / "b" / "K.png")
    write(tmp_path / "labels" / "K.json", json.dumps(aihub_doc("K.png", 1, [0, 0, 1, 1])))
    with pytest.raises(AnnotationError, match="ambiguous"):
        read_source(tmp_path, "aihub")


# --- dispatch errors ----------------------------------------------------------------------
def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown format 'tfrecord'.*folder.*csv.*aihub"):
        read_source(tmp_path, "tfrecord")
    with pytest.raises(NotFound):
        read_source(tmp_path / "nope")
    with pytest.raises(NotFound):
        detect_format(tmp_path / "nope")


def test_auto_on_an_empty_folder_says_what_it_looked_for(tmp_path):
    img(tmp_path / "only-in-root.jpg")
    with pytest.raises(DatasetError, match="looked for .*VOC.*class folders"):
        read_source(tmp_path)


# --- real data sets -----------------------------------------------------------------------
def test_real_fruits_voc():
    root = shared("fruits")
    fmt, reason = detect_format(root)
    assert fmt == "voc" and reason
    src = read_source(root)
    assert len(src.entries) == 300
    assert Counter(e.split for e in src.entries) == {"train": 240, "test": 60}
    assert [c.id for c in src.classes] == ["apple", "banana", "orange"]
    assert all(e.boxes and not e.boxes_normalized for e in src.entries)
    mixed = [e for e in src.entries if e.path.split("/")[-1].startswith("mixed_")]
    assert mixed and any(e.label is None for e in mixed)
    assert all(b.x2 > b.x1 and b.y2 > b.y1 for e in src.entries for b in e.boxes)


def test_real_flowers12_folder():
    root = shared("flowers12")
    assert detect_format(root)[0] == "folder"
    src = read_source(root)
    assert len(src.classes) == 12
    counts = Counter((e.label, e.split) for e in src.entries)
    assert set(counts.values()) == {60, 20} and len(counts) == 24
    assert sum(v for (_, s), v in counts.items() if s == "train") == 720
