"""Easy generated box datasets in Pascal VOC layout: 1-3 bright filled shapes (discs or squares) on a
lightly textured dark background, never touching each other, each label with its own colour."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw

COLOURS = ((235, 45, 45), (45, 215, 75), (60, 110, 245), (250, 225, 40))


def _apart(a, b, gap: int = 4) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def shapes_photo(rng: np.random.Generator, size: tuple[int, int], sides: tuple[int, int], labels: tuple[str, ...],
                 most: int = 3) -> tuple[Image.Image, list[tuple[tuple[int, int, int, int], str]]]:
    """A photo with 1..``most`` shapes of side ``sides[0]``..``sides[1]`` px; (picture, [(box, label)])."""
    w, h = size
    noise = rng.normal(0, 6, (h, w, 1)) + rng.normal(0, 2, (h, w, 3))
    picture = Image.fromarray(np.clip(int(rng.integers(50, 100)) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    objects: list[tuple[tuple[int, int, int, int], str]] = []
    for _ in range(int(rng.integers(1, most + 1))):
        for _try in range(50):
            bw, bh = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
            x1, y1 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = (x1, y1, x1 + bw, y1 + bh)
            if all(_apart(box, other) for other, _ in objects):
                break
        else:
            continue
        k = int(rng.integers(len(labels)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((box[0], box[1], box[2] - 1, box[3] - 1), fill=COLOURS[k % len(COLOURS)])
        objects.append((box, labels[k]))
    return picture, objects


def write_voc(root: Path, n: int, *, seed: int = 0, size: tuple[int, int] = (160, 120),
              sides: tuple[int, int] = (24, 56), labels: tuple[str, ...] = ("shape",), most: int = 3,
              split: tuple[float, float] = (0.7, 0.8)) -> Path:
    """``n`` photos with Annotations/, JPEGImages/ (PNG files) and ImageSets/Main/{train,val,test}.txt:
    the first 70 % train, the next 10 % val, the rest test (``split`` holds the two cut points)."""
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(n):
        picture, objects = shapes_photo(rng, size, sides, labels, most)
        stem = f"p{i:03d}"
        picture.save(root / "JPEGImages" / f"{stem}.png")
        xml = "".join(f"<object><name>{escape(label)}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                      f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b, label in objects)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename>{xml}</annotation>")
        sets["train" if i < n * split[0] else "val" if i < n * split[1] else "test"].append(stem)
    for name, stems in sets.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def true_boxes(root: Path, stem: str) -> np.ndarray:
    """The N x 4 boxes written for one photo (read back from its XML)."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(root / "Annotations" / f"{stem}.xml")
    return np.array([[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                     for o in tree.findall("object")], dtype=np.float64).reshape(-1, 4)
