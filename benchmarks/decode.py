"""Benchmark: snapid's fast JPEG decode path vs plain Pillow, on phone-photo-sized JPEGs.

Photos: the real flowers12 set (224x224 JPEGs) centre-cropped to 3:2 and upscaled with Lanczos to
1936x1296 (2.5 MP), saved as JPEG quality 90 into a cache folder that later runs reuse.

Baseline (what the original student projects did), per image:
    Image.open(path).convert("RGB") → resize short side to 224 (bicubic) → centre crop 224
Fast path (what `snapid data prepare` does), per image, with the size known from the manifest:
    snapid.images.decode_file(path, min_size=decode_size(w, h, None, 224, "crop"))
        → snapid.geometry.fit(img, 224, "crop")

Both run single-threaded in this process over the same files (already in the page cache); the
figure is images/s, best of --repeats runs. The outputs are compared pixel by pixel (mean
absolute difference, 0-255 scale) so a speed-up cannot come from a worse picture.

    .venv/bin/python benchmarks/decode.py            # ~1 minute on 2 cores (first run makes the photos)
    .venv/bin/python benchmarks/decode.py --n 200 --json decode.json

Other benchmarks import `make_photos`, `machine_info` and `print_table` from here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, features

from snapid import geometry, images

ROOT = Path(__file__).resolve().parent.parent
FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers12"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "snapid-bench"
PHOTO_SIZE = (1936, 1296)   # 2.5 MP, 3:2 like a phone photo
QUALITY = 90
SIZE = 224
TARGET = 2.3


# ----------------------------------------------------------------------------- shared helpers

def machine_info() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(len(os.sched_getaffinity(0)))
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo") or "no",
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def print_machine(info: dict) -> None:
    print(f"machine: {info['nproc']} cores ({info['cpu']}), Python {info['python']}, Pillow {info['pillow']} "
          f"(libjpeg-turbo {info['libjpeg_turbo']}), NumPy {info['numpy']}, {info['date']}")


def print_table(rows: list[dict]) -> None:
    """rows: figure, value, baseline, ratio, target (text), met (bool or None)."""
    head = ("figure", "measured", "baseline", "ratio", "target", "")
    body = [(r["figure"], r["value"], r["baseline"], r["ratio"], r["target"],
             "" if r.get("met") is None else ("met" if r["met"] else "MISSED")) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*head))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print(line.format(*row))


def snapid(*args: str, home: Path) -> str:
    """Run the snapid command line as a user does, in workspace ``home``; its stdout, or exit naming the failure."""
    env = {**os.environ, "SNAPID_HOME": str(home), "SNAPID_OFFLINE": "1"}
    env.pop("SNAPID_DB_URL", None)
    done = subprocess.run([sys.executable, "-m", "snapid", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"snapid {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))
        print(f"figures written to {path}")


def snapid_commit() -> str:
    """The checkout's commit (+ "-dirty" when snapid/ has local changes): the figures depend on the code."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "snapid"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("-dirty" if dirty else "")


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link when the file system allows it (no extra disk), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _source_files(flowers: Path) -> list[tuple[str, Path]]:
    """(class, file) for every flowers12 image, interleaved class by class so any prefix is balanced."""
    per_class: dict[str, list[Path]] = {}
    for split in ("train", "test"):
        for cls_dir in sorted(p for p in (flowers / split).iterdir() if p.is_dir()):
            per_class.setdefault(cls_dir.name, []).extend(sorted(cls_dir.glob("*.jpg")))
    ordered = []
    for k in range(max(len(v) for v in per_class.values())):
        for cls in sorted(per_class):
            if k < len(per_class[cls]):
                ordered.append((cls, per_class[cls][k]))
    return ordered


def _make_one(job: tuple[Path, Path, float]) -> None:
    src, dst, grain = job
    im = Image.open(src).convert("RGB")
    w, h = im.size
    aspect = PHOTO_SIZE[0] / PHOTO_SIZE[1]
    crop_h = min(h, round(w / aspect))   # centre crop to 3:2, then upscale with a good filter
    top = (h - crop_h) // 2
    big = im.crop((0, top, w, top + crop_h)).resize(PHOTO_SIZE, Image.Resampling.LANCZOS)
    if grain > 0:  # sensor-like noise: upscaled photos are smoother (smaller files) than real ones
        rng = np.random.default_rng(int.from_bytes(dst.name.encode()[-8:], "little"))
        noisy = np.asarray(big, dtype=np.float32) + rng.normal(0.0, grain, (PHOTO_SIZE[1], PHOTO_SIZE[0], 1))
        big = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    tmp = dst.with_name(f".{dst.name}.tmp")
    big.save(tmp, "JPEG", quality=QUALITY)
    os.replace(tmp, dst)


def make_photos(n: int, cache_dir: Path = DEFAULT_CACHE, flowers: Path = FLOWERS, workers: int = 2,
                grain: float = 0.0) -> Path:
    """The first ``n`` 2.5 MP photos as ``<folder>/<class>/<name>.jpg``; files already made are kept."""
    if not flowers.is_dir():
        sys.exit(f"{flowers}: the flowers12 data set is missing (expected ../shared/datasets/flowers12)")
    sources = _source_files(flowers)
    if n > len(sources):
        sys.exit(f"--n {n}: flowers12 has only {len(sources)} images")
    folder = cache_dir / (f"flowers12-{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}-q{QUALITY}"
                          + (f"-grain{grain:g}" if grain else ""))
    jobs = []
    for cls, src in sources[:n]:
        dst = folder / cls / f"{src.parent.parent.name}_{src.name}"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((src, dst, grain))
    if jobs:
        started = time.perf_counter()
        print(f"making {len(jobs)} photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} in {folder} ...", flush=True)
        with Pool(workers) as pool:
            pool.map(_make_one, jobs, chunksize=8)
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def photo_list(folder: Path, n: int) -> list[Path]:
    """The same first ``n`` photos make_photos made, in its (class-interleaved) order."""
    return [folder / cls / f"{src.parent.parent.name}_{src.name}" for cls, src in _source_files(FLOWERS)[:n]]


# ----------------------------------------------------------------------------- the two paths

def baseline(path: Path) -> Image.Image:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    scale = SIZE / min(w, h)
    im = im.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    w, h = im.size
    left, top = (w - SIZE) // 2, (h - SIZE) // 2
    return im.crop((left, top, left + SIZE, top + SIZE))


def fast(path: Path, width: int, height: int) -> Image.Image:
    im = images.decode_file(path, min_size=geometry.decode_size(width, height, None, SIZE, "crop"))
    return geometry.fit(im, SIZE, "crop")


def best_rate(fn, items: list, repeats: int) -> tuple[float, list[float]]:
    """Best images/s over ``repeats`` runs of ``fn`` over every item."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            fn(*item)
        rates.append(len(items) / (time.perf_counter() - started))
    return max(rates), rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="photos to decode per run (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path; the best is kept (default 3)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the photos are kept (default {DEFAULT_CACHE})")
    parser.add_argument("--grain", type=float, default=0.0, metavar="SIGMA",
                        help="add Gaussian noise (SIGMA grey levels) to the photos, for files closer to a real phone "
                             "photo's size (default 0: plain upscale)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()

    info = machine_info()
    folder = make_photos(args.n, args.cache_dir, grain=args.grain)
    paths = photo_list(folder, args.n)
    sizes = []
    for p in paths:  # sizes come from the manifest in prepare; read them here, outside the timing
        with Image.open(p) as im:
            sizes.append(im.size)
        p.read_bytes()  # warm the page cache for both paths alike
    mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024

    # the outputs must match closely, or the speed-up means nothing
    diffs = []
    for p, (w, h) in zip(paths, sizes, strict=True):
        a = np.asarray(baseline(p), dtype=np.int16)
        b = np.asarray(fast(p, w, h), dtype=np.int16)
        assert a.shape == b.shape == (SIZE, SIZE, 3), (a.shape, b.shape)
        diffs.append(float(np.abs(a - b).mean()))

    base_rate, base_all = best_rate(baseline, [(p,) for p in paths], args.repeats)
    fast_rate, fast_all = best_rate(fast, [(p, w, h) for p, (w, h) in zip(paths, sizes, strict=True)], args.repeats)
    ratio = fast_rate / base_rate
    draft = images.decode_file(paths[0], min_size=geometry.decode_size(*sizes[0], None, SIZE, "crop")).size

    print(f"\ndecode + resize to {SIZE}x{SIZE}, single thread, {args.n} JPEGs of {sizes[0][0]}x{sizes[0][1]} "
          f"(q{QUALITY}, grain {args.grain:g}, mean {mean_kb:.0f} KiB), best of {args.repeats}")
    print(f"fast path decodes at {draft[0]}x{draft[1]} (JPEG DCT draft) before the resize")
    print_machine(info)
    print()
    rows = [{
        "figure": "decode images/s (snapid fast path)", "value": f"{fast_rate:.1f}/s",
        "baseline": f"{base_rate:.1f}/s (Pillow open+convert+resize)", "ratio": f"{ratio:.2f}x",
        "target": f">= {TARGET}x", "met": ratio >= TARGET,
    }, {
        "figure": "mean |fast - baseline| per pixel (0-255)", "value": f"{np.mean(diffs):.2f}",
        "baseline": "0", "ratio": "-", "target": "informational (max per image "
        f"{max(diffs):.2f})", "met": None,
    }]
    print_table(rows)
    print(f"\nall runs, images/s: baseline {', '.join(f'{r:.1f}' for r in base_all)}; "
          f"fast {', '.join(f'{r:.1f}' for r in fast_all)}")
    write_json(args.json, {
        "benchmark": "decode", "machine": info, "n": args.n, "repeats": args.repeats,
        "photo": {"width": sizes[0][0], "height": sizes[0][1], "quality": QUALITY, "grain": args.grain,
                  "mean_kib": round(mean_kb, 1)},
        "draft_size": list(draft),
        "baseline_images_per_s": round(base_rate, 2), "fast_images_per_s": round(fast_rate, 2),
        "ratio": round(ratio, 3), "target_ratio": TARGET, "target_met": ratio >= TARGET,
        "mean_abs_diff": round(float(np.mean(diffs)), 3), "max_image_mean_abs_diff": round(max(diffs), 3),
        "runs": {"baseline": [round(r, 2) for r in base_all], "fast": [round(r, 2) for r in fast_all]},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
