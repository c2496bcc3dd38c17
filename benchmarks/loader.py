"""Benchmark: batches of normalised float tensors per second, prepared cache vs a naive loader.

Photos: the first --n of the 2.5 MP upscaled flowers12 photos made by benchmarks/decode.py
(1936x1296 JPEG q90, kept in the cache folder between runs).

Baseline (what the original student projects did): torchvision ImageFolder (Pillow open →
convert RGB) → Resize(224) → CenterCrop(224) → ToTensor → Normalize(ImageNet), in a torch
DataLoader with batch 64, shuffle, num_workers=2.

snapid: `import_dataset` (workers=2) into a temporary workspace → `prepare` (size 224, workers=2)
→ CachedDataset over the prepared index → make_loader(batch 64, shuffle) → normalize(batch,
ImageNet mean/std) in the main process. The one-time import and prepare are timed and printed
separately; they are not part of the throughput figure.

Both sides run one untimed warm-up epoch, then --epochs timed epochs (the cache side runs more
epochs until at least --min-seconds have passed, since one of its epochs takes a fraction of a
second). The figure is steady-state batches/s and images/s.

    .venv/bin/python benchmarks/loader.py            # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/loader.py --n 480 --epochs 3 --json loader.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import (  # noqa: E402
    DEFAULT_CACHE,
    link_or_copy,
    machine_info,
    make_photos,
    photo_list,
    print_machine,
    print_table,
    write_json,
)

from snapid.data.cache import PrepareParams, index_path, prepare  # noqa: E402
from snapid.data.cached_dataset import CachedDataset, make_loader, normalize  # noqa: E402
from snapid.importer import import_dataset  # noqa: E402
from snapid.track import datasets as dataset_store  # noqa: E402
from snapid.track.db import get_engine, transaction  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 224
BATCH = 64
TARGET = 30.0


def link_subset(photos: list[Path], source: Path, dest: Path) -> Path:
    """Exactly these photos as ``dest/<class>/<name>`` (hard links when possible, else copies)."""
    for p in photos:
        link_or_copy(p, dest / p.relative_to(source))
    return dest


def naive_loader(root: Path, workers: int) -> DataLoader:
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize(SIZE), transforms.CenterCrop(SIZE), transforms.ToTensor(), transforms.Normalize(MEAN, STD),
    ])
    return DataLoader(datasets.ImageFolder(str(root), transform=transform), batch_size=BATCH, shuffle=True,
                      num_workers=workers)


def run_epochs(epoch, epochs: int, min_seconds: float) -> dict:
    """One untimed warm-up epoch, then at least ``epochs`` timed ones (more until ``min_seconds``)."""
    epoch()
    batches = images = 0
    done = 0
    started = time.perf_counter()
    while done < epochs or time.perf_counter() - started < min_seconds:
        b, n = epoch()
        batches, images, done = batches + b, images + n, done + 1
    seconds = time.perf_counter() - started
    return {"epochs": done, "batches": batches, "images": images, "seconds": round(seconds, 3),
            "batches_per_s": batches / seconds, "images_per_s": images / seconds}


def naive_epoch(loader: DataLoader):
    def epoch() -> tuple[int, int]:
        b = n = 0
        for x, _ in loader:
            assert x.dtype == torch.float32 and x.shape[1:] == (3, SIZE, SIZE)
            b, n = b + 1, n + len(x)
        return b, n
    return epoch


def cached_epoch(loader: DataLoader, spent: dict):
    """One epoch of the cache side; adds the seconds spent in normalize() to ``spent``."""
    def epoch() -> tuple[int, int]:
        b = n = 0
        for x, _ in loader:
            started = time.perf_counter()
            x = normalize(x, MEAN, STD)
            spent["normalize"] = spent.get("normalize", 0.0) + time.perf_counter() - started
            assert x.dtype == torch.float32 and x.shape[1:] == (3, SIZE, SIZE)
            b, n = b + 1, n + len(x)
        return b, n
    return epoch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=320, help="photos (2.5 MP) in the data set (default 320)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per side, after one warm-up (default 2)")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="keep timing more epochs until this many seconds have passed (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive loader, and "
                                                               "import/prepare workers (default 2)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the photos are kept (default {DEFAULT_CACHE})")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()

    info = machine_info()
    folder = make_photos(args.n, args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="snapid-bench-loader-") as tmp:
        root = link_subset(photo_list(folder, args.n), folder, Path(tmp) / "photos")

        print(f"naive loader: {args.n} photos, batch {BATCH}, num_workers={args.workers} ...", flush=True)
        naive = run_epochs(naive_epoch(naive_loader(root, args.workers)), args.epochs, 0.0)

        print("snapid: import + prepare ...", flush=True)
        ws = Workspace.at(Path(tmp) / "home")
        engine = get_engine(f"sqlite:///{ws.database}")
        started = time.perf_counter()
        report = import_dataset(root, name="bench", engine=engine, workers=args.workers)
        import_s = time.perf_counter() - started
        with transaction(engine) as session:
            manifest = dataset_store.load_manifest(session, name="bench")
        params = PrepareParams(size=SIZE)
        started = time.perf_counter()
        prepared = prepare(manifest, ws, params, workers=args.workers)
        prepare_s = time.perf_counter() - started
        ds = CachedDataset(index_path(ws, params, "bench", report.version), split=None)
        assert len(ds) == args.n, (len(ds), args.n)
        print("snapid: cached loader ...", flush=True)
        spent: dict[str, float] = {}
        cached = run_epochs(cached_epoch(make_loader(ds, BATCH, shuffle=True), spent), args.epochs, args.min_seconds)
        all_batches = cached["batches"] * (cached["epochs"] + 1) / cached["epochs"]  # with the warm-up epoch
        cached["normalize_ms_per_batch"] = round(1000 * spent["normalize"] / all_batches, 2)
        cached["ms_per_batch"] = round(1000 / cached["batches_per_s"], 2)
        engine.dispose()

    ratio = cached["images_per_s"] / naive["images_per_s"]
    print(f"\nbatches of {BATCH} normalised float tensors 3x{SIZE}x{SIZE}, {args.n} photos of 1936x1296 (2.5 MP), "
          f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads)")
    print(f"naive: {naive['epochs']} timed epochs in {naive['seconds']:.1f} s; "
          f"cached: {cached['epochs']} timed epochs in {cached['seconds']:.1f} s")
    print(f"cached side: {cached['ms_per_batch']:.1f} ms per batch, of which normalize() "
          f"{cached['normalize_ms_per_batch']:.1f} ms (uint8 -> float, mean/std on the CPU)")
    print(f"one-time cost of the cache: import {import_s:.1f} s ({args.n / import_s:.1f} images/s), "
          f"prepare {prepare_s:.1f} s ({prepared.processed / prepare_s:.1f} images/s, workers={args.workers}); "
          f"the naive loader pays {args.n / naive['images_per_s']:.1f} s every epoch")
    print_machine(info)
    print()
    print_table([{
        "figure": "loader images/s (prepared cache)", "value": f"{cached['images_per_s']:.0f}/s",
        "baseline": f"{naive['images_per_s']:.1f}/s (Pillow + torchvision, {args.workers} workers)",
        "ratio": f"{ratio:.1f}x", "target": f">= {TARGET:g}x", "met": ratio >= TARGET,
    }, {
        "figure": "loader batches/s (prepared cache)", "value": f"{cached['batches_per_s']:.1f}/s",
        "baseline": f"{naive['batches_per_s']:.2f}/s",
        "ratio": f"{cached['batches_per_s'] / naive['batches_per_s']:.1f}x", "target": "-", "met": None,
    }])
    write_json(args.json, {
        "benchmark": "loader", "machine": info, "n": args.n, "batch": BATCH, "workers": args.workers,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "naive": naive, "cached": cached, "ratio": round(ratio, 2), "target_ratio": TARGET,
        "target_met": ratio >= TARGET, "import_seconds": round(import_s, 2), "prepare_seconds": round(prepare_s, 2),
        "prepare_images_per_s": round(prepared.processed / prepare_s, 2),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
