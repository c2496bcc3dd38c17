"""Benchmark: evaluation throughput (images/s) of a trained run on the prepared cache.

Data: ../shared/datasets/flowers12 (12 species; 240 test photos at 224x224), imported and prepared
at 224 px in a temporary workspace, then a quick mobilenet_v2 run is trained (offline ImageNet
weights, a 3-epoch probe on cached features, no fine-tuning): what is measured is inference, not
accuracy, so a short training is enough.

snapid: `snapid.evaluate.loaded.predict_logits` over the test split, batches of 64 read whole from
the memory-mapped cache, the conv+BatchNorm-folded channels_last backbone (best of --repeats). Also
printed: the same with --tta (image + mirror), and the whole `evaluate_run` (calibration on val,
prediction, metrics, latency, thumbnails, files and database) per test image.

Baseline (the naive loop of the original student projects): one image at a time from the same
cache, eager model (no folding), contiguous memory format, `model(x[None])`. Both sides use 2
intra-op threads and the same pixels; their top-1 answers are compared.

    .venv/bin/python benchmarks/evaluate.py                # ~2 minutes on 2 cores
    .venv/bin/python benchmarks/evaluate.py --json eval.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import FLOWERS, machine_info, print_machine, print_table, snapid_commit, write_json  # noqa: E402

from snapid.data.cache import PrepareParams, prepare  # noqa: E402
from snapid.data.cached_dataset import CachedDataset, normalize  # noqa: E402
from snapid.evaluate.evaluation import evaluate_run  # noqa: E402
from snapid.evaluate.loaded import load_trained, predict_logits, split_dataset  # noqa: E402
from snapid.importer import import_dataset  # noqa: E402
from snapid.models import registry  # noqa: E402
from snapid.track import datasets as dataset_store  # noqa: E402
from snapid.track.db import get_engine, transaction  # noqa: E402
from snapid.train.config import TrainConfig  # noqa: E402
from snapid.train.fit import train  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402

SIZE = 224


def setup(tmp: Path, workers: int, model: str = "mobilenet_v2"):
    """Import, prepare and train a quick run of MODEL in a temporary workspace; returns (workspace, engine)."""
    ws = Workspace.at(tmp / "home")
    engine = get_engine(f"sqlite:///{ws.database}")
    import_dataset(FLOWERS, name="flowers", engine=engine, workers=workers)
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name="flowers")
    size = SIZE if model == "mobilenet_v2" else None  # others at their own input size
    prepare(manifest, ws, PrepareParams(size=size or registry.get_spec(model).input_size), workers=workers)
    config = TrainConfig(model=model, size=size, probe_epochs=3, probe_views=1, finetune_epochs=0)
    train("flowers", config, workspace=ws, engine=engine, name="bench", workers=workers)
    return ws, engine


def snapid_rate(trained, dataset: CachedDataset, repeats: int, tta: bool = False) -> tuple[float, np.ndarray]:
    best, logits = 0.0, None
    for _ in range(repeats):
        started = time.perf_counter()
        logits, _ = predict_logits(trained.model, dataset, trained.preprocess, tta=tta)
        best = max(best, len(dataset) / (time.perf_counter() - started))
    return best, logits


@torch.no_grad()
def naive_rate(trained, dataset: CachedDataset) -> tuple[float, np.ndarray]:
    """One image at a time, eager model, contiguous tensors."""
    model = trained.model.eval()
    mean, std = trained.preprocess["mean"], trained.preprocess["std"]
    model(normalize(dataset[0][0][None], mean, std))  # warm-up, like the other side's first batch
    out = []
    started = time.perf_counter()
    for i in range(len(dataset)):
        pixels, _ = dataset[i]
        out.append(model(normalize(pixels[None], mean, std))[0].numpy())
    return len(dataset) / (time.perf_counter() - started), np.stack(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="import/prepare/train workers (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="snapid passes over the test split; best counts")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not FLOWERS.is_dir():
        sys.exit(f"{FLOWERS}: the flowers12 data set is missing (expected ../shared/datasets/flowers12)")
    torch.set_num_threads(args.threads)
    info = machine_info()
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), commit=snapid_commit())
    with tempfile.TemporaryDirectory(prefix="snapid-bench-eval-") as tmp:
        print("setup: import, prepare 224 px, quick mobilenet_v2 probe run ...", flush=True)
        started = time.perf_counter()
        ws, engine = setup(Path(tmp), args.workers)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
        torch.set_num_threads(args.threads)  # training may have changed it
        trained = load_trained("bench", engine=engine)
        test = split_dataset(trained, "test", workspace=ws, engine=engine)
        fast, fast_logits = snapid_rate(trained, test, args.repeats)
        tta, _ = snapid_rate(trained, test, 1, tta=True)
        naive, naive_logits = naive_rate(trained, test)
        started = time.perf_counter()
        result = evaluate_run("bench", workspace=ws, engine=engine)
        whole = len(test) / (time.perf_counter() - started)
        engine.dispose()
    agree = float((fast_logits.argmax(1) == naive_logits.argmax(1)).mean())
    gap = float(np.abs(fast_logits - naive_logits).max())
    figures = {"benchmark": "evaluate", "machine": info, "n_test": len(test), "snapid_images_per_s": round(fast, 1),
               "naive_images_per_s": round(naive, 1), "ratio": round(fast / naive, 2),
               "tta_images_per_s": round(tta, 1), "evaluate_run_images_per_s": round(whole, 1), "top1_agreement": agree,
               "max_logit_gap": gap, "test_top1": result["top1"], "latency_ms": result["latency_ms"]}
    print(f"\nflowers12 test split ({len(test)} photos, {SIZE} px, mobilenet_v2), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print_machine(info)
    print(f"snapid at commit {info['commit']}\n")
    print_table([
        {"figure": "evaluation throughput (predict_logits, prepared cache)", "value": f"{fast:.1f} images/s",
         "baseline": f"{naive:.1f} images/s (per-image eager loop)", "ratio": f"{fast / naive:.2f}x",
         "target": "informational (issue 4 sets none)", "met": None},
        {"figure": "with --tta (image + mirror)", "value": f"{tta:.1f} images/s", "baseline": "-", "ratio": "-",
         "target": "informational", "met": None},
        {"figure": "whole evaluate_run (calibrate, predict, report, store)", "value": f"{whole:.1f} test images/s",
         "baseline": "-", "ratio": "-", "target": "informational", "met": None},
        {"figure": "same answers as the baseline", "value": f"top-1 agreement {agree:.4f}, max |logit gap| {gap:.2e}",
         "baseline": "-", "ratio": "-", "target": "1.0", "met": agree == 1.0},
    ])
    print(f"\ntest top-1 of the quick run {result['top1']:.4f}; single-image latency {result['latency_ms']:.1f} ms")
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
