"""Benchmark: a new class from 5 photos, no retraining (`snapid add-class`, issue 20).

birds100 (../shared/datasets/birds100, {train,test}/<species>/*.jpg): 10 species (a seeded draw) are held out;
the other 90 are imported and trained as a user would (`snapid data import`, then `snapid train` with a quick
probe-only recipe: mobilenet_v2, the frozen-backbone probe, no fine-tuning), and exported (`snapid export`).
Then each held-out species is added to the bundle, one after the other, by `snapid add-class BUNDLE NAME` with 5
of its training photos (a seeded draw). Scored on the test photos with the bundle's graph and serving's own
preprocessing (`snapid.serve.services.preprocess`): top-1 over all 100 classes on the added species' test
photos, and top-1 on the original 90 species' test photos before and after the 10 additions (the drop).
Targets: added ≥ 0.6 top-1, drop ≤ 2 points.

    .venv/bin/python benchmarks/add_class.py                             # birds100: 90 + 10 (minutes on 2 cores)
    .venv/bin/python benchmarks/add_class.py --species 8 --added 2 --train-per-class 8   # a tiny smoke run
    .venv/bin/python benchmarks/add_class.py --json add_class.json --home /tmp/add-class-home
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from decode import link_or_copy, snapid  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

DATASETS = ROOT.parent / "shared" / "datasets"
SHOTS = 5
TARGET_ADDED, TARGET_DROP = 0.6, 0.02


def build_layout(source: Path, out: Path, species: list[str], train_per_class: int | None) -> None:
    """{train,test}/<species>/ of the kept species (hard links where possible; train capped when asked)."""
    for split in ("train", "test"):
        for name in species:
            photos = sorted((source / split / name).glob("*.jpg"))
            if split == "train" and train_per_class:
                photos = photos[:train_per_class]
            for photo in photos:
                link_or_copy(photo, out / split / name / photo.name)


def score(bundle: Path, test: Path, species: list[str]) -> tuple[float, int]:
    """Top-1 of the bundle on the test photos of ``species`` (classes matched by name), as the server scores."""
    import onnxruntime as ort

    from snapid.export.bundle import load_bundle
    from snapid.images import DEFAULT_LIMITS
    from snapid.serve.services.preprocess import PreprocessSpec, prepare_photo

    loaded = load_bundle(bundle)
    spec = PreprocessSpec.from_bundle(loaded.preprocess)
    by_name = {c["name"]: c["index"] for c in loaded.labels}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(loaded.file("model.onnx")), options, providers=["CPUExecutionProvider"])
    right = total = 0
    for name in species:
        photos = sorted((test / name).glob("*.jpg"))
        for start in range(0, len(photos), 32):
            chunk = photos[start:start + 32]
            x = np.stack([prepare_photo(p.read_bytes(), spec, DEFAULT_LIMITS, p.name) for p in chunk])
            logits = session.run(["logits"], {"images": x})[0]
            right += int((logits.argmax(axis=1) == by_name[name]).sum())
            total += len(chunk)
    return right / max(total, 1), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="birds100")
    parser.add_argument("--species", type=int, default=90, help="species trained on")
    parser.add_argument("--added", type=int, default=10, help="species added afterwards, 5 photos each")
    parser.add_argument("--train-per-class", type=int, default=None, help="cap the training photos (smoke runs)")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=None, help="workspace to use (and keep)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    source = DATASETS / args.set
    if not source.is_dir():
        sys.exit(f"{source} is missing (../shared/datasets: see its README)")
    everything = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    rng = np.random.default_rng(args.seed)
    order = [everything[i] for i in rng.permutation(len(everything))]
    added, kept = sorted(order[:args.added]), sorted(order[args.added:args.added + args.species])
    home = args.home or Path(tempfile.mkdtemp(prefix="snapid-add-class-"))
    home.mkdir(parents=True, exist_ok=True)
    times, original, bundle = {}, home / "bundle0", home / "bundle"
    if not (original / "manifest.json").is_file():   # a kept --home reuses its trained run and export
        layout = home / "layout"
        shutil.rmtree(layout, ignore_errors=True)
        build_layout(source, layout, kept, args.train_per_class)
        t = time.perf_counter()
        snapid("data", "import", str(layout), "--name", "kept", home=home)
        snapid("train", "kept", "--model", args.model, "--epochs", "0", "--budget", "none", "--name", "kept-run",
               "--seed", str(args.seed), home=home)
        times["import_train_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        snapid("export", "kept-run", "--out", str(original), home=home)   # default: 20 reference photos a class
        times["export_s"] = round(time.perf_counter() - t, 1)
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(original, bundle)
    before, n_kept = score(bundle, source / "test", kept)

    t = time.perf_counter()
    wins = {}
    for name in added:
        photos = sorted((source / "train" / name).glob("*.jpg"))
        shots = [str(photos[i]) for i in sorted(rng.choice(len(photos), SHOTS, replace=False))]
        manifest = json.loads(snapid("add-class", str(bundle), name, *shots, "--json", home=home))
        wins[name] = manifest["added_classes"][-1]["wins_own_photos"]
    times["add_class_s_each"] = round((time.perf_counter() - t) / max(len(added), 1), 2)
    after, _ = score(bundle, source / "test", kept)
    added_top1, n_added = score(bundle, source / "test", added)

    result = {"set": args.set, "model": args.model, "species": len(kept), "added": len(added), "shots": SHOTS,
              "train_per_class": args.train_per_class, "seed": args.seed, "added_species": added,
              "kept_test_photos": n_kept, "added_test_photos": n_added,
              "kept_top1_before": round(before, 4), "kept_top1_after": round(after, 4),
              "drop_points": round(100 * (before - after), 2), "added_top1": round(added_top1, 4),
              "wins_own_photos": wins, "times": times,
              "targets_met": {"added": added_top1 >= TARGET_ADDED, "drop": before - after <= TARGET_DROP}}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
