"""Box formats round-trip exactly through the importers; letterbox ↔ original conversions; matching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from snapid import geometry
from snapid.data.manifest import Box
from snapid.detect.geometry import (
    coco_to_xyxy,
    letterbox_geometry,
    to_letterbox,
    to_original,
    xyxy_to_coco,
    xyxy_to_yolo,
    yolo_to_xyxy,
)
from snapid.detect.matching import box_iou, count_matches, greedy_match
from snapid.importer import import_dataset
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from tests.conftest import write_image

W, H = 96, 64
# (x, y, w, h) in pixels; halves and quarters so every format's arithmetic is exact in binary
BOXES = [(8.5, 4.0, 40.25, 30.0), (50.0, 10.0, 44.0, 52.0), (0.0, 0.0, 96.0, 64.0)]


def stored_boxes(engine, name: str) -> dict[str, list[Box]]:
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=name)
    return {sample.path.split("/")[-1]: sample.boxes for sample in manifest.samples}


def expected(i: int) -> tuple[float, float, float, float]:
    return coco_to_xyxy(*BOXES[i])


def test_coco_round_trip(tmp_path, engine):
    root = tmp_path / "coco"
    for i in range(3):
        write_image(root / f"p{i}.jpg", (W, H), seed=i)
    doc = {"images": [{"id": i, "file_name": f"p{i}.jpg", "width": W, "height": H} for i in range(3)],
           "annotations": [{"id": i, "image_id": i, "category_id": 7, "bbox": list(BOXES[i]), "iscrowd": 0}
                           for i in range(3)],
           "categories": [{"id": 7, "name": "pill"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    import_dataset(root, name="c", engine=engine, fmt="coco")
    got = stored_boxes(engine, "c")
    for i in range(3):
        box = got[f"p{i}.jpg"][0]
        assert (box.x1, box.y1, box.x2, box.y2) == expected(i)
        assert xyxy_to_coco(box.x1, box.y1, box.x2, box.y2) == BOXES[i]
        assert box.label == "7"


def test_voc_round_trip(tmp_path, engine):
    root = tmp_path / "voc"
    for i in range(3):
        write_image(root / f"p{i}.jpg", (W, H), seed=i)
        x1, y1, x2, y2 = expected(i)
        (root / f"p{i}.xml").write_text(
            f"<annotation><filename>p{i}.jpg</filename><size><width>{W}</width><height>{H}</height></size>"
            f"<object><name>apple</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox></object></annotation>")
    import_dataset(root, name="v", engine=engine, fmt="voc")
    got = stored_boxes(engine, "v")
    for i in range(3):
        box = got[f"p{i}.jpg"][0]
        assert (box.x1, box.y1, box.x2, box.y2, box.label) == (*expected(i), "apple")


def test_yolo_round_trip(tmp_path, engine):
    root = tmp_path / "yolo"
    (root / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("apple\nbanana\n")
    lines = {}
    for i in range(3):
        write_image(root / "images" / f"p{i}.jpg", (W, H), seed=i)
        normalised = xyxy_to_yolo(*expected(i), W, H)
        lines[i] = normalised
        (root / "labels" / f"p{i}.txt").write_text("1 " + " ".join(repr(v) for v in normalised) + "\n")
    import_dataset(root, name="y", engine=engine, fmt="yolo")
    got = stored_boxes(engine, "y")
    for i in range(3):
        box = got[f"p{i}.jpg"][0]
        assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(expected(i), abs=1e-9)
        assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(yolo_to_xyxy(*lines[i], W, H), abs=1e-12)
        assert xyxy_to_yolo(box.x1, box.y1, box.x2, box.y2, W, H) == pytest.approx(lines[i], abs=1e-12)
        assert box.label == "1"


@pytest.mark.parametrize("xyxy", [False, True])
def test_aihub_round_trip(tmp_path, engine, xyxy):
    root = tmp_path / "aihub"
    for i in range(3):
        write_image(root / "images" / f"p{i}.png", (W, H), seed=i)
        bbox = list(expected(i)) if xyxy else list(BOXES[i])
        doc = {"images": [{"id": 1, "file_name": f"p{i}.png", "width": W, "height": H}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1899, "bbox": bbox}],
               "categories": [{"id": 1899, "name": "pill"}], **({"bbox_format": "xyxy"} if xyxy else {})}
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"p{i}.json").write_text(json.dumps(doc))
    import_dataset(root, name="a", engine=engine, fmt="aihub")
    got = stored_boxes(engine, "a")
    for i in range(3):
        box = got[f"p{i}.png"][0]
        assert (box.x1, box.y1, box.x2, box.y2) == expected(i)
        assert xyxy_to_coco(box.x1, box.y1, box.x2, box.y2) == BOXES[i]


sizes = st.integers(1, 6000)


@settings(max_examples=300, deadline=None)
@given(w=sizes, h=sizes, size=st.integers(32, 1024), fx=st.tuples(*[st.floats(0, 1)] * 4))
def test_letterbox_round_trip(w, h, size, fx):
    x1, x2 = sorted((fx[0] * w, fx[1] * w))
    y1, y2 = sorted((fx[2] * h, fx[3] * h))
    scale, pad_x, pad_y = letterbox_geometry(w, h, size)
    framed = to_letterbox([[x1, y1, x2, y2]], scale, pad_x, pad_y)
    assert (framed >= -1e-6).all() and (framed <= size + 1e-6).all()   # inside the canvas
    back = to_original(framed, scale, pad_x, pad_y, w, h)
    assert back[0] == pytest.approx([x1, y1, x2, y2], rel=1e-9, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300), size=st.integers(32, 160))
def test_geometry_matches_the_drawn_letterbox(w, h, size):
    """geometry.letterbox (what serving feeds the detector) pastes the photo exactly where the geometry says."""
    canvas = np.asarray(geometry.letterbox(Image.new("RGB", (w, h), (255, 255, 255)), size))
    scale, pad_x, pad_y = letterbox_geometry(w, h, size)
    ys, xs = np.nonzero(canvas[..., 0] > 128)
    assert (xs.min(), ys.min()) == (pad_x, pad_y)
    assert (xs.max() + 1, ys.max() + 1) == (pad_x + max(1, round(w * scale)), pad_y + max(1, round(h * scale)))


def test_training_letterbox_equals_serving_letterbox(tmp_path):
    """data.letterbox_picture (training, from a draft decode) and geometry.letterbox (serving) agree."""
    from snapid.detect.data import letterbox_picture

    picture = Image.open(write_image(tmp_path / "p.png", (300, 200), seed=3)).convert("RGB")
    served = np.asarray(geometry.letterbox(picture, 128), dtype=np.int16)
    trained = letterbox_picture(picture, 300, 200, 128).astype(np.int16)
    assert np.array_equal(served, trained)


def test_letterbox_rejects_empty_sizes():
    with pytest.raises(ValueError, match="0x5"):
        letterbox_geometry(0, 5, 100)


def test_box_iou_and_greedy_match():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    preds = [[0, 0, 10, 9], [1, 0, 10, 10], [50, 50, 60, 60]]   # two on the first object, one false
    matched = greedy_match(preds, [0.6, 0.9, 0.8], gt)
    assert matched.tolist() == [-1, 0, -1]                     # the higher score takes the object
    assert count_matches(matched, len(gt)) == (1, 2, 1)
    labelled = greedy_match(preds, [0.6, 0.9, 0.8], gt, pred_labels=[1, 2, 1], gt_labels=[1, 1])
    assert labelled.tolist() == [0, -1, -1]                    # a wrong label never matches
    assert greedy_match([], [], gt).tolist() == []
