"""Benchmark: the pointing game for explain=true (issue 19) on ../shared/datasets/fruits.

Imports fruits (Pascal VOC boxes) into a temporary workspace, trains the default recipe's model on whole photos
(`efficientnet_lite2+mobilenet_v2` at 260 px, two views, L-BFGS linear head, no fine-tuning: what `snapid train`
plans on this machine; `crop: none`, since the game asks where in the whole photo the model looked), exports it
(the "cam" output parity-checked against torch), serves the bundle in process and posts every test photo to
`/api/v1/predict?explain=true`. A photo scores when the peak cell of its heatmap, mapped back to the photo (the
centre of the cell, in the centred square the model saw), falls inside a true box of the predicted class.
Printed: the score over all test photos (a wrong answer has no box of its class: a miss), over the correctly
answered ones, and two baselines: always pointing at the photo's centre, and the same with a 15 px tolerance.

    .venv/bin/python benchmarks/pointing_game.py                  # ~3 min on 2 cores
    .venv/bin/python benchmarks/pointing_game.py --model mobilenet_v2 --size 224
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import ROOT, machine_info, print_machine, snapid_commit, write_json  # noqa: E402

from snapid import images  # noqa: E402
from snapid.config import Settings  # noqa: E402
from snapid.export.from_run import export_run  # noqa: E402
from snapid.importer import import_dataset  # noqa: E402
from snapid.track.db import get_engine  # noqa: E402
from snapid.train.config import TrainConfig  # noqa: E402
from snapid.train.fit import train  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402

FRUITS = ROOT.parent / "shared" / "datasets" / "fruits"
TOLERANCE_PX = 15   # the usual slack of the pointing game (Zhang et al. 2016), for the tolerant figures


def boxes_of(xml: Path) -> list[tuple[str, float, float, float, float]]:
    root = ET.parse(xml).getroot()
    out = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        out.append((obj.findtext("name").strip(), *(float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return out


def peak_point(peak: list[int], grid: tuple[int, int], width: int, height: int, resize: str) -> tuple[float, float]:
    """The centre of grid cell ``peak`` in photo pixels: the grid covers the centred square the model saw."""
    side = min(width, height) if resize == "crop" else max(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left + (peak[1] + 0.5) / grid[1] * side, top + (peak[0] + 0.5) / grid[0] * side


def inside(x: float, y: float, boxes, label: str, tolerance: float = 0.0) -> bool:
    return any(name == label and x0 - tolerance <= x <= x1 + tolerance and y0 - tolerance <= y <= y1 + tolerance
               for name, x0, y0, x1, y1 in boxes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite2+mobilenet_v2")
    parser.add_argument("--size", type=int, default=260)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not FRUITS.is_dir():
        print(f"{FRUITS} is not present")
        return 1
    from fastapi.testclient import TestClient

    from snapid.serve.app import create_app

    torch.set_num_threads(args.threads)
    info = machine_info()
    print_machine(info)
    print(f"snapid at commit {snapid_commit()}")
    with tempfile.TemporaryDirectory(prefix="snapid-pointing-") as tmp:
        ws = Workspace.at(Path(tmp) / "home")
        engine = get_engine(f"sqlite:///{ws.database}")
        report = import_dataset(FRUITS, name="fruits", engine=engine, fmt="voc", workers=2)
        print(f"import: {report.images} photos, splits {report.splits}")
        started = time.perf_counter()
        train("fruits", TrainConfig(model=args.model, size=args.size, crop="none", probe_views=2, finetune_epochs=0),
              workspace=ws, engine=engine, name="whole")
        train_s = time.perf_counter() - started
        bundle = export_run("whole", workspace=ws, engine=engine, references=0)
        entry, cam_parity = bundle.manifest["explain"], bundle.manifest["parity"].get("cam")
        print(f"train {train_s:.0f} s; explain {entry}; cam parity {cam_parity}")
        if not entry.get("available"):
            return 1
        photos = sorted((FRUITS / "test").glob("*.jpg"))
        rows = []
        app = create_app(Settings(home=ws.home, reload_poll_s=0), bundle=bundle.path)
        plain_ms, explained_ms = [], []
        with TestClient(app, base_url="http://127.0.0.1") as client:
            for photo in photos:
                data = photo.read_bytes()
                began = time.perf_counter()
                client.post("/api/v1/predict", files={"files": (photo.name, data, "image/jpeg")})
                plain_ms.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                r = client.post("/api/v1/predict?explain=true", files={"files": (photo.name, data, "image/jpeg")})
                explained_ms.append((time.perf_counter() - began) * 1000)
                if r.status_code != 200:
                    sys.exit(f"{photo.name}: {r.status_code} {r.text[:300]}")
                body = r.json()
                heat, label = body["explain"][0], body["predictions"][0]["id"]
                width, height = images.upright_size(images.open_image(data))
                boxes = boxes_of(photo.with_suffix(".xml"))
                x, y = peak_point(heat["peak"], (len(heat["grid"]), len(heat["grid"][0])), width, height,
                                  heat["resize"])
                truth = {name for name, *_ in boxes}
                rows.append({"photo": photo.name, "predicted": label, "correct": label in truth,
                             "hit": inside(x, y, boxes, label), "hit_tol": inside(x, y, boxes, label, TOLERANCE_PX),
                             "centre": inside(width / 2, height / 2, boxes, label),
                             "centre_tol": inside(width / 2, height / 2, boxes, label, TOLERANCE_PX)})
    n = len(rows)
    correct = [r for r in rows if r["correct"]]
    mixed = [r for r in rows if r["photo"].startswith("mixed")]

    def rate(key, subset=rows):
        return sum(r[key] for r in subset) / max(1, len(subset))

    grid = f"{len(heat['grid'])} x {len(heat['grid'][0])}"
    print(f"\n{args.model} at {args.size} px, {n} test photos ({len(correct)} answered with a class in the photo), "
          f"heatmap grid {grid}")
    print(f"{'':38} {'peak':>7} {'centre':>7}")
    print(f"{'pointing game, all test photos':38} {rate('hit'):7.3f} {rate('centre'):7.3f}")
    print(f"{'  with 15 px tolerance':38} {rate('hit_tol'):7.3f} {rate('centre_tol'):7.3f}")
    print(f"{'  on correctly answered photos':38} {rate('hit', correct):7.3f} {rate('centre', correct):7.3f}")
    print(f"{'  on the mixed_* photos':38} {rate('hit', mixed):7.3f} {rate('centre', mixed):7.3f}")
    print(f"latency per photo (in process, p50): {np.percentile(plain_ms, 50):.0f} ms without explain, "
          f"{np.percentile(explained_ms, 50):.0f} ms with explain=true")
    if args.json:
        write_json(args.json, {"machine": info, "model": args.model, "size": args.size, "grid": grid,
                               "pointing_game": rate("hit"), "pointing_game_tol": rate("hit_tol"),
                               "centre_baseline": rate("centre"), "on_correct": rate("hit", correct),
                               "train_s": train_s, "cam_parity": cam_parity, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
