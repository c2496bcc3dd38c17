"""Benchmark: offline batch prediction (`snapid.load(BUNDLE).predict(paths)`, the library path of
`snapid predict`) against the serving benchmark's offline figure (benchmarks/serve.py `offline_rate`: the
server's own decode + inference code, one photo at a time, no HTTP).

Model and photos as benchmarks/serve.py: a quick mobilenet_v2 run on flowers12 (offline ImageNet weights,
3-epoch probe; benchmarks/evaluate.py `setup`) exported with `export_run`, and 2.5 MP phone-size JPEGs
(flowers12 upscaled, benchmarks/decode.py). `offline_rate` decodes photos already in memory; the
predict path reads every file as well (from the page cache). The two are measured in alternating rounds
in one process (other work on the machine hits both alike); the best round of each counts.

Target: predict >= 1.0x the offline figure.

    .venv/bin/python benchmarks/predict.py                      # trains and exports the quick run first
    .venv/bin/python benchmarks/predict.py --bundle BUNDLE      # an existing bundle (the same kind of model)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import machine_info, make_photos, photo_list, print_machine, snapid_commit, write_json  # noqa: E402
from serve import offline_rate  # noqa: E402

import snapid  # noqa: E402
from snapid.inference import BATCH_SIZE  # noqa: E402


def predict_rate(model, paths: list[Path], seconds: float) -> float:
    """Images/s of model.predict over ``paths``, whole passes for at least ``seconds``."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        answers = model.predict(paths)
        assert all(a.ok for a in answers), [a.error for a in answers if not a.ok][:3]
        done += len(paths)
    return done / (time.perf_counter() - started)


def measure(bundle: Path, paths: list[Path], seconds: float, rounds: int, batch_size: int, threads: int | None) -> dict:
    photos = [p.read_bytes() for p in paths]
    model = snapid.load(bundle, batch_size=batch_size, threads=threads)
    model.predict(paths[:16])  # warm-up: ORT's first runs, the pool, the page cache
    offline, ours = [], []
    for r in range(rounds):
        offline.append(offline_rate(bundle, photos, seconds))
        ours.append(predict_rate(model, paths, seconds))
        print(f"  round {r + 1}: offline_rate {offline[-1]:.1f} images/s, predict {ours[-1]:.1f} images/s", flush=True)
    return {"offline_rate": max(offline), "predict": max(ours), "rounds": {"offline_rate": offline, "predict": ours},
            "batch_size": model.batch_size, "threads": model.threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle to use (default: train and export the quick run)")
    parser.add_argument("--photos", type=int, default=96, help="2.5 MP photos per pass")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per side and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"photos per model run (default {BATCH_SIZE})")
    parser.add_argument("--threads", type=int, default=None, help="decode threads (default: the cores but one, 1 to 4)")
    parser.add_argument("--workers", type=int, default=2, help="import/prepare/train workers when training")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    paths = photo_list(make_photos(args.photos, workers=args.workers), args.photos)
    with tempfile.TemporaryDirectory(prefix="snapid-predict-bench-") as tmp:
        bundle = args.bundle
        if bundle is None:
            from evaluate import setup

            from snapid.export.from_run import export_run

            print("training a quick mobilenet_v2 run on flowers12 and exporting it ...", flush=True)
            ws, engine = setup(Path(tmp), args.workers)
            bundle = export_run("bench", workspace=ws, engine=engine).path
        print(f"bundle {bundle}; {len(paths)} photos of 2.5 MP; {args.rounds} rounds of {args.seconds:g} s per side",
              flush=True)
        figures = measure(bundle, paths, args.seconds, args.rounds, args.batch_size, args.threads)
    ratio = figures["predict"] / figures["offline_rate"]
    print(f"\nsnapid predict (library path, batch {figures['batch_size']}, {figures['threads']} decode thread(s)): "
          f"{figures['predict']:.1f} images/s")
    print("serving benchmark's offline figure (decode + inference, one photo at a time): "
          f"{figures['offline_rate']:.1f} images/s")
    print(f"ratio: {ratio:.2f}x (target >= 1.0x)")
    write_json(args.json, {"machine": info, "commit": snapid_commit(), **figures, "ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
