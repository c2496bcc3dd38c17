"""Benchmark: does `snapid data issues` find wrong labels? (issue 19)

Each real photo set is imported into a fresh workspace, then the labels of 5 % of its training images
(train and the validation split carved from it; seeded) are flipped to another class at random and saved
as a new version of the dataset. `snapid data issues NAME --json` runs on it as a user runs it (a
subprocess, default options: the planner's most accurate pretrained backbone here). Printed: recall of the
flipped images among the top 2 x (number flipped) suspects, precision of the suspects and of those that
confident learning flags (and their recall), and how often the suggested label is the true one.

Baselines, on the same features: chance (2 x flipped of N drawn at random: recall 2 x 5 % = 0.10), and
the "top losses" a user of fastai would look at: one linear head fitted on all the (noisy) labels by the
same L-BFGS solver, images ranked by the loss of their given label (in-sample, so the head has partly
learnt the wrong labels). Target: recall ≥ 0.8 on both sets.

    .venv/bin/python benchmarks/label_issues.py                     # flowers12 and birds100 (~5 min on 2 cores)
    .venv/bin/python benchmarks/label_issues.py --sets flowers12 --json issues.json
    .venv/bin/python benchmarks/label_issues.py --home /tmp/issues-home   # keeps the workspace (and its features)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from decode import snapid  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

DATASETS = ROOT.parent / "shared" / "datasets"
TARGET = 0.8
FLIP = 0.05


def flip_labels(name: str, home: Path, seed: int) -> dict[str, tuple[str, str]]:
    """A new version of NAME with FLIP of its train + val labels changed at random: path → (true, given)."""
    from snapid.track import datasets as dataset_store
    from snapid.track.db import get_engine, transaction

    engine = get_engine(f"sqlite:///{home / 'snapid.db'}")
    rng = np.random.default_rng(seed)
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=name)
        training = [i for i, sample in enumerate(manifest.samples) if sample.split in ("train", "val")]
        chosen = rng.choice(training, size=round(FLIP * len(training)), replace=False)
        classes = [c.id for c in manifest.classes]
        flipped = {}
        for i in chosen:
            sample = manifest.samples[int(i)]
            wrong = str(rng.choice([c for c in classes if c != sample.label]))
            flipped[sample.path] = (sample.label, wrong)
            sample.label = wrong
        dataset_store.save_dataset_version(
            s, name=name, format=manifest.format, root=manifest.root, classes=manifest.classes,
            samples=manifest.samples,
            rejected=manifest.rejected, params={**manifest.params, "benchmark_flipped": len(flipped)},
            notes=manifest.notes + [f"benchmark: {len(flipped)} labels flipped"])
    return flipped


def top_losses(name: str, home: Path, ranked: int) -> list[str]:
    """The baseline: paths of the ``ranked`` highest in-sample losses of one head fitted on every label."""
    from snapid.evaluate.label_issues import _fit_predict, compute_features
    from snapid.track.db import get_engine
    from snapid.workspace import Workspace

    engine = get_engine(f"sqlite:///{home / 'snapid.db'}")
    feats = compute_features(name, workspace=Workspace.at(home), engine=engine)  # cached by the command's run
    probs = _fit_predict(feats.x, feats.labels, feats.x, len(feats.classes), 1e-2)
    loss = -np.log(np.clip(probs[np.arange(len(feats.labels)), feats.labels], 1e-12, 1))
    return [feats.paths[i] for i in np.argsort(-loss)[:ranked]]


def measure(root: Path, seed: int, keep: Path | None = None) -> dict:
    name = root.name
    with tempfile.TemporaryDirectory(prefix="snapid-issues-") as tmp:
        home = keep or Path(tmp) / "home"
        snapid("data", "import", str(root), "--name", name, "--json", home=home)
        os.environ["SNAPID_HOME"] = str(home)
        flipped = flip_labels(name, home, seed)
        start = time.perf_counter()
        result = json.loads(snapid("data", "issues", name, "--json", home=home))
        seconds = time.perf_counter() - start
        n = len(flipped)
        suspects = [row["path"] for row in result["label_issues"]]
        confident = [row["path"] for row in result["label_issues"] if row["confident"]]
        top = suspects[: 2 * n]
        found = [row for row in result["label_issues"][: 2 * n] if row["path"] in flipped]
        baseline = top_losses(name, home, 2 * n)
    return {
        "images": result["images"], "flipped": n, "suspects": len(suspects), "flagged": len(confident),
        "model": result["model"],
        "recall_at_2x": sum(p in flipped for p in top) / n,
        "recall_flagged": sum(p in flipped for p in confident) / n,
        "precision": sum(p in flipped for p in confident) / max(len(confident), 1),
        "precision_suspects": sum(p in flipped for p in suspects) / max(len(suspects), 1),
        "precision_at_2x": sum(p in flipped for p in top) / max(len(top), 1),
        "suggestion_right": sum(row["suggested"] == flipped[row["path"]][0] for row in found) / max(len(found), 1),
        "out_of_fold_top1": result["out_of_fold_top1"], "seconds": seconds, "stage_seconds": result["seconds"],
        "baseline_top_losses_recall_at_2x": sum(p in flipped for p in baseline) / n,
        "baseline_chance_recall_at_2x": min(1.0, 2 * n / result["images"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="flowers12,birds100", help="Folders of ../shared/datasets, or paths.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Write the results here.")
    parser.add_argument("--home", type=Path, help="A workspace to keep (default: a temporary one); its cached "
                        "features make a second run take seconds.")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = {}
    for item in args.sets.split(","):
        root = Path(item) if os.sep in item else DATASETS / item
        r = measure(root, args.seed, args.home)
        results[root.name] = r
        print(f"{root.name}: {r['flipped']} of {r['images']} train + val labels flipped; {r['model']} features, "
              f"out-of-fold top-1 {r['out_of_fold_top1']:.3f}; {r['seconds']:.0f} s "
              f"(features {r['stage_seconds']['features']} s, analysis {r['stage_seconds']['analysis']} s)", flush=True)
        print(f"{root.name}: baseline recall@2x: chance {r['baseline_chance_recall_at_2x']:.3f}, "
              f"top losses {r['baseline_top_losses_recall_at_2x']:.3f}", flush=True)
        ratio = r["recall_at_2x"] / max(r["baseline_top_losses_recall_at_2x"], 1e-9)
        print(f"{root.name}: snapid   recall@2x {r['recall_at_2x']:.3f} ({ratio:.2f}x top losses) of "
              f"{r['suspects']} suspects (precision {r['precision_suspects']:.3f}, top 2x {r['precision_at_2x']:.3f}); "
              f"{r['flagged']} flagged by confident learning: recall {r['recall_flagged']:.3f}, precision "
              f"{r['precision']:.3f}; suggested label right for {r['suggestion_right']:.3f} of those found; "
              f"target recall ≥ {TARGET}: {'met' if r['recall_at_2x'] >= TARGET else 'MISSED'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
