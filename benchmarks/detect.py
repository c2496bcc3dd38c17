"""Benchmark: detector mAP on ../shared/datasets/fruits after a CPU-friendly budget, and the
detect → crop → classify experiment (the product project's 87 % → 95 %).

Data: fruits (Pascal VOC XMLs; apple, banana, orange, and mixed_* photos with several fruits;
37 XMLs give width/height 0 and 29 images are RGBA/P: the importer reads sizes from the pixels and
composites alpha on white), imported into a temporary workspace.

snapid: `snapid detect train fruits` (fasterrcnn_mobilenet_v2, offline ImageNet backbone,
class-agnostic, letterboxed to --size, --epochs), timed; `snapid detect eval` on test; then two
mobilenet_v2 probe classifiers (offline weights, no fine-tuning): one trained on whole photos, one on
box crops (pad 0.1), each scored by `compare_two_stage` on whole test photos and on the detector's
crops. Baseline: the whole-photo classifier on whole photos (what the student projects did).

    .venv/bin/python benchmarks/detect.py                       # ~15 minutes on 2 cores
    .venv/bin/python benchmarks/detect.py --size 256 --epochs 6 --json detect.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import ROOT, machine_info, print_machine, print_table, snapid_commit, write_json  # noqa: E402

from snapid.detect.compare import compare_two_stage  # noqa: E402
from snapid.detect.evaluate import evaluate_detector  # noqa: E402
from snapid.detect.train import train_detector  # noqa: E402
from snapid.importer import import_dataset  # noqa: E402
from snapid.track.db import get_engine  # noqa: E402
from snapid.train.config import TrainConfig  # noqa: E402
from snapid.train.fit import train  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402

FRUITS = ROOT.parent / "shared" / "datasets" / "fruits"


class Printer:
    def phase(self, title, total):
        pass

    def progress(self, done, total, images_per_s=None):
        pass

    def epoch(self, r):
        print(f"  epoch {r['epoch']}: loss {r['train_loss']:.3f} val_loss {r['val_loss']:.3f} "
              f"mAP@0.5 {r['map50']:.3f} {r['seconds']:.0f}s", flush=True)

    def note(self, text):
        print(f"  note: {text}", flush=True)


def classifier(ws, engine, name: str, crop: str) -> None:
    config = TrainConfig(model="mobilenet_v2", size=224, crop=crop, pad=0.1, probe_epochs=10, probe_views=2,
                         finetune_epochs=0)
    train("fruits", config, workspace=ws, engine=engine, name=name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not FRUITS.is_dir():
        print(f"{FRUITS} is not present")
        return 1
    torch.set_num_threads(args.threads)
    info = machine_info()
    print_machine(info)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.at(Path(tmp) / "home")
        engine = get_engine(f"sqlite:///{ws.database}")
        report = import_dataset(FRUITS, name="fruits", engine=engine, fmt="voc")
        print(f"import: {report.images} photos, splits {report.splits}, rejected {report.rejected}")
        for note in report.notes:
            print(f"  {note}")
        started = time.perf_counter()
        summary = train_detector("fruits", workspace=ws, engine=engine, size=args.size, epochs=args.epochs,
                                 name="det", reporter=Printer())
        train_s = time.perf_counter() - started
        ev = evaluate_detector("det", workspace=ws, engine=engine, split="test")
        classifier(ws, engine, "whole", "none")
        classifier(ws, engine, "crops", "boxes")
        whole = compare_two_stage("fruits", classifier="whole", detector="det", workspace=ws, engine=engine)
        crops = compare_two_stage("fruits", classifier="crops", detector="det", workspace=ws, engine=engine)
    pr = ev["at_threshold"]["overall"]
    rows = [
        row("detector training", f"{train_s:.0f} s",
            note=f"{args.epochs} epochs max, size {args.size}, best epoch {summary['best_epoch']}"),
        row("test mAP@0.5", f"{ev['map50']:.3f}", note=f"mAP@0.5:0.95 {ev['map']:.3f}; {ev['n']} photos, "
                                                       f"{ev['objects']} fruits"),
        row("precision / recall", f"{pr['precision'] or 0:.3f} / {pr['recall'] or 0:.3f}",
            note="score >= 0.5, IoU >= 0.5"),
        row("detector latency", f"{ev['latency_ms']:.0f} ms/photo", note="torch eager, CPU"),
    ]
    for label, result in (("whole-photo classifier", whole), ("crop classifier", crops)):
        s, m = result["single"], result["multi"]
        rows.append(row(f"{label}, one-fruit photos: crop vs whole", _pct(s["crop_top1"]), _pct(s["whole_top1"]),
                        _ratio(s["crop_top1"], s["whole_top1"]),
                        f"ground-truth crop {_pct(s['gt_crop_top1'])}; {s['photos']} photos, "
                        f"{s['fallback']} fallbacks"))
        rows.append(row(f"{label}, mixed photos per fruit", _pct(m["crop_top1"]), _pct(m["whole_top1"]),
                        _ratio(m["crop_top1"], m["whole_top1"]),
                        f"{m['objects']} fruits, {_pct(m['detected'])} detected"))
    rows.append(row("two-stage vs the students' pipeline", _pct(crops["single"]["crop_top1"]),
                    _pct(whole["single"]["whole_top1"]),
                    _ratio(crops["single"]["crop_top1"], whole["single"]["whole_top1"]),
                    "crop classifier on detector crops vs whole-photo classifier on whole photos"))
    print_table(rows)
    write_json(args.json, {"machine": info, "commit": snapid_commit(), "args": vars(args), "rows": rows,
                           "train_seconds": train_s, "summary": summary,
                           "eval": {k: v for k, v in ev.items() if k != "gallery"},
                           "compare": {"whole": _drop(whole), "crops": _drop(crops)}})
    return 0


def row(figure: str, value: str, baseline: str = "-", ratio: str = "-", note: str = "") -> dict:
    return {"figure": figure, "value": value, "baseline": baseline, "ratio": ratio, "target": note}


def _ratio(a, b) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _drop(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "photos"}


if __name__ == "__main__":
    raise SystemExit(main())
