"""Benchmark: two-stage serving (detect → crop → classify) on ../shared/datasets/fruits.

Imports fruits into a temporary workspace, trains a crop classifier (mobilenet_v2 probe on box crops,
as `benchmarks/detect.py` does) and a detector (default arch, --size px, --epochs), exports them as
one bundle (`export_run(classifier, detector=...)`, parity-checked), then serves it in process and
posts every test photo, one at a time, to /api/v1/predict. Prints the latency per photo (p50, p90)
and per detected object, the objects found and the whole-photo fallbacks.

    .venv/bin/python benchmarks/two_stage.py               # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import machine_info, print_machine, snapid_commit  # noqa: E402
from detect import FRUITS, classifier  # noqa: E402

from snapid.config import Settings  # noqa: E402
from snapid.detect.train import train_detector  # noqa: E402
from snapid.export.from_run import export_run  # noqa: E402
from snapid.importer import import_dataset  # noqa: E402
from snapid.track.db import get_engine  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="detector input size (default 256)")
    parser.add_argument("--epochs", type=int, default=2, help="detector epochs (default 2: a latency figure, not mAP)")
    args = parser.parse_args()
    if not FRUITS.is_dir():
        print(f"{FRUITS} is not present")
        return 1
    from fastapi.testclient import TestClient

    from snapid.serve.app import create_app

    print_machine(machine_info())
    print(f"snapid at commit {snapid_commit()}")
    with tempfile.TemporaryDirectory(prefix="snapid-two-stage-") as tmp:
        ws = Workspace.at(Path(tmp) / "home")
        engine = get_engine(f"sqlite:///{ws.database}")
        import_dataset(FRUITS, name="fruits", engine=engine, workers=2)
        started = time.perf_counter()
        classifier(ws, engine, "cls", "boxes")
        print(f"classifier on crops: {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        train_detector("fruits", workspace=ws, engine=engine, size=args.size, epochs=args.epochs, name="det")
        print(f"detector ({args.epochs} epochs at {args.size} px): {time.perf_counter() - started:.0f} s", flush=True)
        bundle = export_run("cls", workspace=ws, engine=engine, detector="det")
        photos = sorted((FRUITS / "test").glob("*.jpg"))
        latencies, objects, fallbacks = [], 0, 0
        with TestClient(create_app(Settings(home=ws.home, reload_poll_s=0), bundle=bundle.path)) as client:
            for photo in photos[:2]:  # warm-up
                client.post("/api/v1/predict", files={"files": (photo.name, photo.read_bytes(), "image/jpeg")})
            for photo in photos:
                began = time.perf_counter()
                answer = client.post("/api/v1/predict", files={"files": (photo.name, photo.read_bytes(), "image/jpeg")})
                latencies.append(time.perf_counter() - began)
                body = answer.json()
                if answer.status_code != 200:
                    sys.exit(f"{photo.name}: {answer.status_code} {body}")
                objects += len(body.get("objects") or [])
                fallbacks += body.get("fallback") == "no_object_detected"
    ms = np.asarray(latencies) * 1000
    print(f"\n{len(photos)} test photos, {objects} objects detected, {fallbacks} whole-photo fallbacks")
    print(f"latency per photo: p50 {np.percentile(ms, 50):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms; "
          f"per detected object {ms.sum() / max(objects, 1):.0f} ms (in process, one photo at a time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
