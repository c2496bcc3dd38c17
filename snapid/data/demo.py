"""A synthetic pill dataset in the AI-Hub layout, for `snapid demo` and for tests.

Twelve fictional products (names, ingredients and makers are made up), photographed on varied
surfaces: `per_class` single-pill photos per kind and `multi` photos of 2–4 different pills.
Some kinds differ only by imprint, by a shade of colour or by a score line, so classifying
them is not trivial. The same seed gives byte-identical files: every image draws from its own
numpy Generator seeded with (seed, index), and nothing else is random.

Layout written under ``out`` (atomically: built in a sibling folder, then renamed):
    images/<stem>.jpg|png   labels/<stem>.json   drugs.csv   interactions.csv   README.md   demo.json
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from snapid.data.demo_draw import PillLook, Scene, render_scene
from snapid.errors import DatasetError

FORMAT_VERSION = 1
STAMP = "demo.json"


@dataclass(frozen=True)
class DemoKind:
    class_id: int
    name_ko: str
    name_en: str
    ingredient: str
    maker: str
    use_ko: str
    use_en: str
    drug_shape: str        # AI-Hub wording: 원형, 타원형, 장방형 ...
    color_class1: str      # AI-Hub colour class: 하양, 노랑 ... (a capsule's cap)
    look: PillLook
    color_class2: str = ""  # a capsule's body colour

    @property
    def form_ko(self) -> str:
        colours = "·".join(c for c in (self.color_class1, self.color_class2) if c)
        return f"{colours} 경질캡슐" if self.look.shape == "capsule" else f"{colours} {self.drug_shape} 정제"

    @property
    def form_en(self) -> str:
        return "two-colour capsule" if self.look.shape == "capsule" else f"{self.look.shape} tablet"


WHITE, IVORY = (242, 241, 236), (236, 231, 214)
_DP, _GY, _SB = "데모제약 (Demo Pharm)", "가상약품 (Fictive Drugs)", "스냅바이오 (Snap Bio)"

# Confusable pairs on purpose: 1899/1900 (imprint), 2482/2483 (shade), 3105/3106 (score line).
KINDS: tuple[DemoKind, ...] = (
    DemoKind(1899, "스냅정 10mg", "Snaptab 10 mg", "snapidolol 10 mg", _DP, "가상의 혈압약",
             "fictional blood-pressure tablet", "원형", "하양", PillLook("round", (WHITE,), ("A10",))),
    DemoKind(1900, "스냅정 20mg", "Snaptab 20 mg", "snapidolol 20 mg", _DP, "가상의 혈압약",
             "fictional blood-pressure tablet", "원형", "하양", PillLook("round", (WHITE,), ("A20",))),
    DemoKind(2482, "스냅피린정", "Snapirin tablets", "demopirin 100 mg", _GY, "가상의 해열진통제",
             "fictional pain and fever tablet", "원형", "노랑",
             PillLook("round", ((246, 226, 96),), ("SP",), rel_size=0.85)),
    DemoKind(2483, "스냅피린에스정", "Snapirin S tablets", "demopirin 300 mg", _GY, "가상의 해열진통제",
             "fictional pain and fever tablet", "원형", "노랑",
             PillLook("round", ((230, 184, 58),), ("SP",), rel_size=0.85)),
    DemoKind(3105, "스냅롤정 5mg", "Snaprol 5 mg", "fictarolol 5 mg", _SB, "가상의 심장약",
             "fictional heart-rhythm tablet", "타원형", "하양",
             PillLook("oval", (IVORY,), ("SR", "5"), score=True)),
    DemoKind(3106, "스냅롤서방정 5mg", "Snaprol XR 5 mg", "fictarolol 5 mg (extended release)", _SB,
             "가상의 심장약 (서방형)", "fictional heart-rhythm tablet, extended release", "타원형", "하양",
             PillLook("oval", (IVORY,), ("SR", "5"))),
    DemoKind(4120, "스냅펜정 400mg", "Snapfen 400 mg", "demoprofen 400 mg", _DP, "가상의 소염진통제",
             "fictional anti-inflammatory tablet", "장방형", "분홍",
             PillLook("oblong", ((236, 166, 180),), ("SF", "400"), score=True, rel_size=1.1)),
    DemoKind(4730, "스냅졸캡슐 20mg", "Snapzole 20 mg capsules", "fictazole 20 mg", _GY, "가상의 위장약",
             "fictional stomach-acid capsule", "장방형", "빨강",
             PillLook("capsule", ((196, 36, 44), WHITE), ("SZ", "20"), rel_size=1.1), "하양"),
    DemoKind(4731, "스냅목스캡슐 500mg", "Snapmox 500 mg capsules", "demomoxin 500 mg", _SB, "가상의 항생제",
             "fictional antibiotic capsule", "장방형", "파랑",
             PillLook("capsule", ((38, 72, 150), (242, 218, 110)), ("SM", "500"), rel_size=1.2), "노랑"),
    DemoKind(5208, "스냅코트정", "Snapcort tablets", "fictisone 1 mg", _DP, "가상의 스테로이드제",
             "fictional steroid tablet", "타원형", "하늘",
             PillLook("oval", ((150, 190, 226),), ("SC 1",), rel_size=0.9)),
    DemoKind(6011, "스냅비타정", "Snapvita tablets", "demovitamin complex", _GY, "가상의 종합비타민",
             "fictional multivitamin tablet", "장방형", "주황",
             PillLook("oblong", ((206, 112, 52),), ("SV",), rel_size=1.15)),
    DemoKind(7342, "스냅도름캡슐", "Snapdorm capsules", "fictazepam 5 mg", _SB, "가상의 수면유도제",
             "fictional sleep-aid capsule", "장방형", "초록",
             PillLook("capsule", ((58, 146, 92), IVORY), ("SD", "7")), "하양"),
)

# (a, b, severity, reason_ko, reason_en): all fictional.
INTERACTIONS: tuple[tuple[int, int, str, str, str], ...] = (
    (1899, 1900, "caution", "같은 성분(snapidolol) 중복 복용", "same ingredient (snapidolol) taken twice"),
    (2482, 4120, "contraindicated", "함께 복용하면 출혈 위험 증가 (가상)",
     "together raise bleeding risk (fictional)"),
    (7342, 4730, "contraindicated", "함께 복용하면 과도한 졸음 (가상)",
     "together cause excessive drowsiness (fictional)"),
    (3105, 5208, "caution", "맥박이 느려질 수 있음 (가상)", "may slow the heart rate (fictional)"),
    (4731, 6011, "caution", "비타민의 미네랄이 항생제 흡수를 줄임 (가상)",
     "minerals in the vitamin reduce antibiotic absorption (fictional)"),
)


@dataclass(frozen=True)
class DemoInfo:
    root: Path
    classes: int
    single: int
    multi: int
    drugs_csv: Path
    interactions_csv: Path
    created: bool = True   # False when an existing demo folder was reused

    @property
    def images(self) -> int:
        return self.single + self.multi


def _plan(per_class: int, multi: int, seed: int) -> list[tuple[str, list[DemoKind]]]:
    """(file stem, kinds in the photo) for every image, in index order."""
    plan = [(f"K-{k.class_id:06d}_{i:04d}", [k]) for k in KINDS for i in range(per_class)]
    pick = np.random.default_rng([seed, 1 << 20])  # its own stream: adding singles keeps groups
    for i in range(multi):
        idx = pick.choice(len(KINDS), size=int(pick.integers(2, 5)), replace=False)
        kinds = [KINDS[j] for j in idx]
        plan.append(("K-" + "-".join(f"{k.class_id:06d}" for k in kinds) + f"_{i:04d}", kinds))
    return plan


def _label_json(file_name: str, size: tuple[int, int], kinds: list[DemoKind], scene: Scene) -> dict:
    def joined(attr: str) -> str:  # a multi-pill photo lists every pill's value, in box order
        values = [str(getattr(k, attr)) for k in kinds]
        return ", ".join(values) if any(values) else ""

    annotations = [{"id": n, "image_id": 1, "bbox": list(box), "category_id": k.class_id,
                    "area": box[2] * box[3], "iscrowd": 0}
                   for n, (k, box) in enumerate(zip(kinds, scene.boxes, strict=True), start=1)]
    return {
        "images": [{"id": 1, "file_name": file_name, "width": size[0], "height": size[1],
                    "dl_name": joined("name_ko"), "drug_shape": joined("drug_shape"),
                    "color_class1": joined("color_class1"), "color_class2": joined("color_class2"),
                    "print_front": ", ".join(" ".join(k.look.imprint) for k in kinds)}],
        "annotations": annotations,
        "categories": [{"id": k.class_id, "name": k.name_ko, "supercategory": "pill"} for k in kinds],
    }


def render_image(seed: int, index: int, kinds: list[DemoKind], size: tuple[int, int], *,
                 mask_only: bool = False) -> Scene:
    """The photo at ``index`` of a demo made with ``seed`` (mask_only: see render_scene)."""
    rng = np.random.default_rng([seed, index])
    return render_scene(rng, [k.look for k in kinds], size, mask_only=mask_only)


def _write_tables(root: Path) -> None:
    with open(root / "drugs.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["class_id", "name_ko", "name_en", "ingredient", "maker", "description_ko",
                      "description_en"])
        for k in KINDS:
            imprint = " ".join(k.look.imprint)
            score_ko, score_en = (", 분할선 있음", ", score line") if k.look.score else ("", "")
            out.writerow([k.class_id, k.name_ko, k.name_en, k.ingredient, k.maker,
                          f"{k.use_ko}. {k.form_ko}, 각인 '{imprint}'{score_ko}. "
                          "데모용 가상 의약품입니다.",
                          f"{k.use_en.capitalize()}; {k.form_en}, imprint '{imprint}'{score_en}. "
                          "Fictional demo product."])
    with open(root / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["a", "b", "severity", "reason_ko", "reason_en"])
        out.writerows(INTERACTIONS)


DISCOUNT_STORES = (("온누리약국", "Onnuri Pharmacy"), ("CU", "CU"), ("GS25", "GS25"))
DISCOUNT_OFFERS = (("1+1", "1+1"), ("20% 할인", "20% off"), ("2+1", "2+1"))


def write_discounts(path: Path, *, today: date) -> Path:
    """A small generated discount table for the demo's pills (a knowledge table with valid_from / valid_to,
    dated around ``today`` so it shows now): one offer per pill for the first few kinds, each valid until a
    day in the next two weeks, and one that ended yesterday, which answers no longer show."""
    rows = []
    for i, kind in enumerate(KINDS[:6]):
        (store_ko, store_en), (offer_ko, offer_en) = DISCOUNT_STORES[i % 3], DISCOUNT_OFFERS[i % 3]
        start, end = today - timedelta(days=3), today + timedelta(days=4 + 2 * i)
        if i == 5:
            start, end = today - timedelta(days=10), today - timedelta(days=1)  # over: hidden at serve time
        rows.append([kind.class_id, store_ko, store_en, offer_ko, offer_en, start.isoformat(), end.isoformat()])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["class_id", "store_ko", "store_en", "offer_ko", "offer_en", "valid_from", "valid_to"])
        out.writerows(rows)
    path.chmod(0o600)
    return path


def _readme(single: int, multi: int, params: dict) -> str:
    return f"""# snapid demo pill dataset (synthetic, fictional)

Generated by `snapid.data.demo` with {json.dumps(params, sort_keys=True)}.
Every product, ingredient, maker and interaction here is made up: this is test data,
not medical information.

- {len(KINDS)} pill kinds (round, oval and oblong tablets; two-colour capsules); some differ only
  by imprint, by a shade of colour or by a score line.
- {single} single-pill photos and {multi} photos with 2-4 different pills; {single + multi} in all.

Layout (AI-Hub style):

- `images/<stem>.jpg` or `.png`: the photos.
- `labels/<stem>.json`: `images` (file_name, width, height, dl_name, drug_shape, color_class1,
  color_class2, print_front; joined with ", " on multi-pill photos), `annotations` (bbox as
  [x, y, w, h] in pixels, category_id) and `categories`.
- `drugs.csv`: class_id, names, ingredient, maker, descriptions.
- `interactions.csv`: pairs of classes not to take together (a, b, severity, reasons).
- `demo.json`: the parameters and counts; regenerate by deleting this folder.
"""


def _existing(out: Path, stamp: dict) -> bool:
    """True when ``out`` already holds this very demo; DatasetError when it holds something else."""
    if not out.exists():
        return False
    if out.is_dir() and not any(out.iterdir()):
        return False
    try:
        found = json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DatasetError(f"{out} exists and is not a snapid demo folder; choose another folder") from None
    if found.get("format_version") != stamp["format_version"] or found.get("params") != stamp["params"]:
        raise DatasetError(f"{out} holds a demo made with other parameters ({found.get('params')}); "
                           "delete it or choose another folder")
    images = out / "images"
    if not images.is_dir() or sum(1 for _ in images.iterdir()) != stamp["counts"]["images"]:
        raise DatasetError(f"{out} holds an incomplete or modified demo; delete it to regenerate")
    return True


def generate_demo(out: Path, *, seed: int = 0, per_class: int = 40, multi: int = 60,
                  size: tuple[int, int] = (320, 240),
                  progress: Callable[[int, int], None] | None = None) -> DemoInfo:
    """Write the demo dataset to ``out``, or reuse it when it is already there with these parameters."""
    out = Path(out)
    if seed < 0 or per_class < 1 or multi < 0:
        raise ValueError("seed and multi must be >= 0 and per_class >= 1")
    size = (int(size[0]), int(size[1]))
    if min(size) < 64:
        raise ValueError(f"size {size} is too small: at least 64×64 pixels")
    plan = _plan(per_class, multi, seed)
    single = len(KINDS) * per_class
    params = {"seed": seed, "per_class": per_class, "multi": multi, "size": list(size)}
    stamp = {"generator": "snapid.data.demo", "format_version": FORMAT_VERSION, "params": params,
             "counts": {"classes": len(KINDS), "single": single, "multi": multi, "images": len(plan)}}
    info = DemoInfo(out, len(KINDS), single, multi, out / "drugs.csv", out / "interactions.csv")
    if _existing(out, stamp):
        return replace(info, created=False)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary one
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for index, (stem, kinds) in enumerate(plan):
            scene = render_image(seed, index, kinds, size)
            file_name = stem + (".png" if scene.quality is None else ".jpg")
            img = Image.fromarray(scene.image)
            if scene.quality is None:
                img.save(tmp / "images" / file_name, optimize=False)
            else:
                img.save(tmp / "images" / file_name, quality=scene.quality)
            doc = _label_json(file_name, size, kinds, scene)
            (tmp / "labels" / f"{stem}.json").write_text(
                json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            if progress is not None:
                progress(index + 1, len(plan))
        _write_tables(tmp)
        (tmp / "README.md").write_text(_readme(single, multi, params), encoding="utf-8")
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")  # last: marks complete
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # an empty folder may be replaced (os.replace cannot on Windows)
        try:
            os.replace(tmp, out)
        except OSError:
            # Someone else finished first: fine if it is the same demo, an error otherwise.
            if _existing(out, stamp):
                return replace(info, created=False)
            raise DatasetError(f"could not move the generated demo into {out}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return info


def write_try_photos(manifest, out: Path, pairs: list[tuple[str, str]], *, pad: float,
                     whole: bool = False) -> list[Path]:
    """Test photos to give the page, for each interacting pair: ``<a>+<b>_<class>.jpg``, one single-pill
    photo of each, and with ``whole`` (a bundle with a detector, which finds the pills itself) the whole
    photos plus ``<a>+<b>_together.jpg``, a photo holding both when the demo made one. Without a
    detector the single-pill photos are cut to their pill, as training cut them. Returns the files written."""
    from snapid import images
    from snapid.geometry import padded_box

    firsts: dict[str, object] = {}
    together: dict[frozenset, object] = {}
    for sample in sorted(manifest.samples, key=lambda x: x.split != "test"):  # test photos first
        labels = {box.label or sample.label for box in sample.boxes}
        if len(sample.boxes) == 1:
            firsts.setdefault(next(iter(labels)), sample)
        for a, b in pairs:
            if {a, b} <= labels:
                together.setdefault(frozenset((a, b)), sample)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(sample, target: Path, box=None) -> None:
        im = images.decode_file(Path(manifest.root) / sample.path)
        if box is not None:
            im = im.crop(tuple(round(v) for v in padded_box((box.x1, box.y1, box.x2, box.y2), pad,
                                                            im.width, im.height)))
        im.save(target, "JPEG", quality=92)
        written.append(target)

    for a, b in pairs:
        for label in (a, b):
            if (sample := firsts.get(label)) is not None:
                save(sample, out / f"{a}+{b}_{label}.jpg", None if whole else sample.boxes[0])
        if whole and (sample := together.get(frozenset((a, b)))) is not None:
            save(sample, out / f"{a}+{b}_together.jpg")
    return written
