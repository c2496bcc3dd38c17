"""The synthetic pill dataset: deterministic, well-formed, tight boxes, atomic and reusable."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from snapid.data import demo
from snapid.data.demo import KINDS, generate_demo, render_image
from snapid.data.demo_draw import BOX_ALPHA
from snapid.errors import DatasetError

PARAMS = dict(seed=7, per_class=2, multi=5, size=(200, 150))
N_IMAGES = len(KINDS) * 2 + 5


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def labels(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / "labels").glob("*.json"))}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> demo.DemoInfo:
    return generate_demo(tmp_path_factory.mktemp("demo") / "pills", **PARAMS)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(made, tmp_path):
    again = generate_demo(tmp_path / "again", **PARAMS)
    assert digests(made.root) == digests(again.root)
    other = generate_demo(tmp_path / "other", **{**PARAMS, "seed": 8})
    first, second = digests(made.root), digests(other.root)
    images = lambda d: {v for k, v in d.items() if k.startswith("images/")}  # noqa: E731
    assert not images(first) & images(second)  # no photo repeats across seeds
    assert first["drugs.csv"] == second["drugs.csv"]  # tables do not depend on the seed


def test_counts_and_layout(made):
    root = made.root
    assert (made.classes, made.single, made.multi, made.images) == (12, 24, 5, N_IMAGES)
    assert made.created and made.drugs_csv == root / "drugs.csv" and made.interactions_csv == root / "interactions.csv"
    assert {p.name for p in root.iterdir()} == {"images", "labels", "drugs.csv", "interactions.csv",
                                                "README.md", "demo.json"}
    images = sorted((root / "images").iterdir())
    assert len(images) == N_IMAGES
    assert {p.suffix for p in images} <= {".jpg", ".png"}
    assert sorted(p.stem for p in images) == sorted(labels(root))
    stamp = json.loads((root / "demo.json").read_text())
    assert stamp["params"] == {"seed": 7, "per_class": 2, "multi": 5, "size": [200, 150]}
    assert stamp["counts"]["images"] == N_IMAGES
    assert f"{N_IMAGES} in all" in (root / "README.md").read_text(encoding="utf-8")
    assert not [p for p in root.parent.iterdir() if ".partial-" in p.name]


def test_every_label_is_valid_aihub_json(made):
    known = {k.class_id for k in KINDS}
    singles = multis = 0
    for stem, doc in labels(made.root).items():
        assert set(doc) == {"images", "annotations", "categories"}
        (info,) = doc["images"]
        path = made.root / "images" / info["file_name"]
        assert path.stem == stem and path.is_file()
        with Image.open(path) as im:
            assert im.size == (info["width"], info["height"]) == (200, 150)
        for key in ("dl_name", "drug_shape", "color_class1", "print_front"):
            assert isinstance(info[key], str) and info[key]
        anns = doc["annotations"]
        assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
        assert [c["id"] for c in doc["categories"]] == [a["category_id"] for a in anns]
        assert all(c["supercategory"] == "pill" and c["name"] for c in doc["categories"])
        for a in anns:
            x, y, w, h = a["bbox"]
            assert all(isinstance(v, int) for v in (x, y, w, h))
            assert w > 4 and h > 4 and x >= 0 and y >= 0 and x + w <= 200 and y + h <= 150
            assert a["area"] == w * h and a["iscrowd"] == 0
            assert isinstance(a["category_id"], int) and a["category_id"] in known
        ids = [a["category_id"] for a in anns]
        if len(anns) == 1:
            singles += 1
        else:
            multis += 1
            assert 2 <= len(anns) <= 4 and len(set(ids)) == len(ids)
            boxes = [a["bbox"] for a in anns]
            for i, (x, y, w, h) in enumerate(boxes):  # pills lie apart
                for X, Y, W, H in boxes[i + 1:]:
                    assert x + w <= X or X + W <= x or y + h <= Y or Y + H <= y
    assert (singles, multis) == (24, 5)


def test_boxes_are_tight_around_the_drawn_pills(made):
    """Re-render each photo as masks (same random draws, so the same geometry, with each pill's
    coverage white on black): every box is exactly the bbox of its pill's covered pixels."""
    docs = labels(made.root)
    for index, (stem, kinds) in enumerate(demo._plan(2, 5, PARAMS["seed"])):
        mask = render_image(PARAMS["seed"], index, kinds, PARAMS["size"], mask_only=True).image[..., 0]
        covered = mask > BOX_ALPHA * 255
        in_boxes = np.zeros_like(covered)
        for x, y, w, h in (a["bbox"] for a in docs[stem]["annotations"]):
            x0, y0 = max(0, x - 2), max(0, y - 2)  # pills lie at least 3 px apart
            ys, xs = np.nonzero(covered[y0: y + h + 2, x0: x + w + 2])
            found = [int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1]
            assert found == [x, y, w, h], stem
            assert covered[y: y + h, x: x + w].mean() > 0.4, stem  # a pill, not a sliver
            in_boxes[y: y + h, x: x + w] = True
        assert not (covered & ~in_boxes).any(), f"{stem}: pill pixels outside every box"


def test_the_saved_photos_show_the_pills_in_their_boxes(made):
    """Under shading, lighting, noise and JPEG, a tablet's pixels keep roughly its colour."""
    docs = labels(made.root)
    colours = {k.class_id: np.array(k.look.colours[0], float) for k in KINDS if k.look.shape != "capsule"}
    checked = 0
    for index, (stem, kinds) in enumerate(demo._plan(2, 5, PARAMS["seed"])):
        if len(kinds) > 1 or kinds[0].class_id not in colours:
            continue
        pill = render_image(PARAMS["seed"], index, kinds, PARAMS["size"], mask_only=True).image[..., 0] > 250
        with Image.open(made.root / "images" / docs[stem]["images"][0]["file_name"]) as im:
            real = np.asarray(im.convert("RGB"), dtype=float)
        ratio = real[pill].mean(axis=0) / colours[kinds[0].class_id]
        assert ((ratio > 0.5) & (ratio < 1.3)).all(), (stem, ratio)
        checked += 1
    assert checked >= 10


def test_second_call_reuses_the_folder(made):
    before = {p: p.stat().st_mtime_ns for p in made.root.rglob("*")}
    start = time.perf_counter()
    info = generate_demo(made.root, **PARAMS)
    assert time.perf_counter() - start < 0.5
    assert not info.created and info.images == N_IMAGES
    assert {p: p.stat().st_mtime_ns for p in made.root.rglob("*")} == before


def test_conflicting_folders_raise_and_are_left_alone(made, tmp_path):
    with pytest.raises(DatasetError, match="other parameters") as err:
        generate_demo(made.root, **{**PARAMS, "per_class": 3})
    assert str(made.root) in str(err.value)
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(DatasetError, match="not a snapid demo") as err:
        generate_demo(user, **PARAMS)
    assert str(user) in str(err.value)
    assert [p.name for p in user.iterdir()] == ["holiday.jpg"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_an_empty_folder_is_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    info = generate_demo(tmp_path / "empty", seed=1, per_class=1, multi=0, size=(96, 72))
    assert info.created and len(list((tmp_path / "empty" / "images").iterdir())) == 12


def test_a_failure_leaves_nothing_behind(tmp_path):
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path / "demo", seed=1, per_class=1, multi=2, size=(96, 72), progress=progress)
    assert calls == [(n, 14) for n in range(1, 6)]
    assert list(tmp_path.iterdir()) == []


def test_tables_parse_and_match_the_photos(made):
    with open(made.drugs_csv, newline="", encoding="utf-8") as fh:
        drugs = list(csv.DictReader(fh))
    assert list(drugs[0]) == ["class_id", "name_ko", "name_en", "ingredient", "maker",
                              "description_ko", "description_en"]
    ids = [d["class_id"] for d in drugs]
    assert len(ids) == len(set(ids)) == 12
    assert all(all(d.values()) for d in drugs)
    in_photos = {str(a["category_id"]) for doc in labels(made.root).values() for a in doc["annotations"]}
    assert set(ids) == in_photos
    with open(made.interactions_csv, newline="", encoding="utf-8") as fh:
        pairs = list(csv.DictReader(fh))
    assert list(pairs[0]) == ["a", "b", "severity", "reason_ko", "reason_en"]
    assert pairs and any(p["severity"] == "contraindicated" for p in pairs)
    for p in pairs:
        assert p["a"] in ids and p["b"] in ids and p["a"] != p["b"]
        assert p["severity"] in {"contraindicated", "caution"} and p["reason_ko"] and p["reason_en"]


def test_confusable_pairs_differ_in_one_detail_only():
    looks = {k.class_id: k.look for k in KINDS}
    assert looks[1899].imprint != looks[1900].imprint and looks[1899].colours == looks[1900].colours
    assert looks[2482].colours != looks[2483].colours and looks[2482].imprint == looks[2483].imprint
    assert looks[3105].score and not looks[3106].score and looks[3105].imprint == looks[3106].imprint
    assert len({k.look.shape for k in KINDS}) == 4


def test_default_font_scales():
    small, large = ImageFont.load_default(size=10), ImageFont.load_default(size=40)
    assert large.getbbox("SN 10")[2] > 2 * small.getbbox("SN 10")[2]


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_demo(Path("unused"), per_class=0)
    with pytest.raises(ValueError):
        generate_demo(Path("unused"), size=(32, 32))
