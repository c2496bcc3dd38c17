"""Benchmark: `snapid data import` throughput (images/s), first import vs re-import of an unchanged tree.

Data: a generated class-per-folder tree of --n small JPEGs (default 20,000; 320x240, q90, 100
classes), each different (smooth random colour field, a few random shapes and light noise, seeded
by its index). It is made once with a process pool and kept under the cache folder; later runs
reuse it when it holds the right number of files.

Figures, with workers=2 in a fresh temporary workspace (SQLite):
  first import  every file is read: sha256, header, a 64 px draft decode for statistics and pHash
  re-import     the same tree, unchanged: facts are reused by path + size + mtime (no file read)
The ratio is re-import / first import throughput. The first-import rate is also extrapolated to
300,000 images (the Pl@ntNet-300K scale), where the target is "minutes, not hours".

Note: the files are in the page cache (just generated or read by an earlier run), so "first
import" measures the work of reading each file, not a cold disk.

    .venv/bin/python benchmarks/import_speed.py              # 20,000 files: a few minutes on 2 cores
    .venv/bin/python benchmarks/import_speed.py --n 2000 --json import.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import DEFAULT_CACHE, machine_info, print_machine, print_table, write_json  # noqa: E402

from snapid.importer import import_dataset  # noqa: E402
from snapid.track.db import get_engine  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402

WIDTH, HEIGHT = 320, 240
CLASSES = 100
QUALITY = 90
PLANTNET = 300_000
TARGET_RATIO = 10.0          # "much faster": our reading of it
TARGET_PLANTNET_MIN = 60.0   # "minutes, not hours"


def _path(root: Path, i: int) -> Path:
    return root / f"class_{i % CLASSES:03d}" / f"img_{i:06d}.jpg"


def _make_one(job: tuple[Path, int]) -> None:
    root, i = job
    rng = np.random.default_rng(1000 + i)
    field = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    im = Image.fromarray(field).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 6))):
        x1, y1 = int(rng.integers(0, WIDTH - 20)), int(rng.integers(0, HEIGHT - 20))
        x2, y2 = x1 + int(rng.integers(10, WIDTH // 2)), y1 + int(rng.integers(10, HEIGHT // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x1, y1, x2, y2), fill=colour)
    noisy = np.asarray(im, dtype=np.int16) + rng.integers(-6, 7, (HEIGHT, WIDTH, 3), dtype=np.int16)
    dst = _path(root, i)
    tmp = dst.with_name(f".{dst.name}.tmp")
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(tmp, "JPEG", quality=QUALITY)
    os.replace(tmp, dst)


def make_tree(n: int, cache_dir: Path, workers: int) -> Path:
    """The tree of ``n`` files, reused when it is already complete; missing files are made."""
    root = cache_dir / f"import-tree-{WIDTH}x{HEIGHT}-n{n}"
    for c in range(min(n, CLASSES)):
        (root / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(n) if not _path(root, i).exists()]
    if missing:
        started = time.perf_counter()
        print(f"making {len(missing):,} JPEGs of {WIDTH}x{HEIGHT} in {root} ({workers} processes) ...", flush=True)
        with Pool(workers) as pool:
            for k, _ in enumerate(pool.imap_unordered(_make_one, [(root, i) for i in missing], chunksize=64), 1):
                if k % 5000 == 0:
                    print(f"  {k:,} / {len(missing):,}", flush=True)
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    else:
        print(f"reusing {n:,} files in {root}", flush=True)
    return root


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="files in the generated tree (default 20,000)")
    parser.add_argument("--workers", type=int, default=2,
                        help="import workers, and processes making the tree (default 2)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the tree is kept (default {DEFAULT_CACHE})")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()

    info = machine_info()
    root = make_tree(args.n, args.cache_dir, args.workers)
    mean_kb = np.mean([_path(root, i).stat().st_size for i in range(0, args.n, max(1, args.n // 500))]) / 1024

    with tempfile.TemporaryDirectory(prefix="snapid-bench-import-") as tmp:
        ws = Workspace.at(tmp)
        engine = get_engine(f"sqlite:///{ws.database}")
        print(f"first import of {args.n:,} files (workers={args.workers}) ...", flush=True)
        started = time.perf_counter()
        first = import_dataset(root, name="bench", engine=engine, workers=args.workers)
        first_s = time.perf_counter() - started
        print(f"  {first_s:.1f} s; re-import of the unchanged tree ...", flush=True)
        started = time.perf_counter()
        again = import_dataset(root, name="bench", engine=engine, workers=args.workers)
        again_s = time.perf_counter() - started
        engine.dispose()  # checkpoints the WAL into the database file
        db_mb = sum(f.stat().st_size for f in ws.database.parent.glob(ws.database.name + "*")) / 1e6

    assert first.images == args.n and not first.rejected, (first.images, first.rejected)
    assert again.images == args.n and again.reused == args.n and again.version == first.version + 1, again.as_dict()
    first_rate, again_rate = args.n / first_s, args.n / again_s
    ratio = again_rate / first_rate
    plantnet_s = PLANTNET / first_rate
    print(f"\nimport of a class-per-folder tree: {args.n:,} JPEGs of {WIDTH}x{HEIGHT} (mean {mean_kb:.1f} KiB), "
          f"{CLASSES} classes, workers={args.workers}, SQLite (database {db_mb:.1f} MB after both versions)")
    print(f"first import {first_s:.1f} s, re-import {again_s:.1f} s ({again.reused:,} files reused)")
    print_machine(info)
    print()
    print_table([{
        "figure": "re-import images/s (unchanged tree)", "value": f"{again_rate:,.0f}/s",
        "baseline": f"{first_rate:,.0f}/s (first import)", "ratio": f"{ratio:.1f}x",
        "target": f">= {TARGET_RATIO:g}x", "met": ratio >= TARGET_RATIO,
    }, {
        "figure": "first import images/s", "value": f"{first_rate:,.0f}/s", "baseline": "-", "ratio": "-",
        "target": "-", "met": None,
    }, {
        "figure": f"first import of {PLANTNET:,} images (extrapolated)", "value": minutes(plantnet_s),
        "baseline": "-", "ratio": "-", "target": f"< {TARGET_PLANTNET_MIN:g} min",
        "met": plantnet_s / 60 < TARGET_PLANTNET_MIN,
    }, {
        "figure": f"re-import of {PLANTNET:,} images (extrapolated)", "value": minutes(PLANTNET / again_rate),
        "baseline": "-", "ratio": "-", "target": "-", "met": None,
    }])
    write_json(args.json, {
        "benchmark": "import_speed", "machine": info, "n": args.n, "workers": args.workers, "classes": CLASSES,
        "image": {"width": WIDTH, "height": HEIGHT, "quality": QUALITY, "mean_kib": round(float(mean_kb), 2)},
        "first_seconds": round(first_s, 2), "reimport_seconds": round(again_s, 2),
        "first_images_per_s": round(first_rate, 1), "reimport_images_per_s": round(again_rate, 1),
        "ratio": round(ratio, 2), "target_ratio": TARGET_RATIO, "target_ratio_met": ratio >= TARGET_RATIO,
        "plantnet_300k_first_minutes": round(plantnet_s / 60, 1),
        "plantnet_300k_reimport_minutes": round(PLANTNET / again_rate / 60, 1),
        "target_plantnet_minutes": TARGET_PLANTNET_MIN, "target_plantnet_met": plantnet_s / 60 < TARGET_PLANTNET_MIN,
        "database_mb": round(db_mb, 1),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
