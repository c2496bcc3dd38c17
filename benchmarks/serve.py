"""Benchmark: `snapid serve` against the naive server (benchmarks/baseline_server.py), same model,
same photos, same machine, one run.

Model: a quick mobilenet_v2 run on flowers12 (offline ImageNet weights, 3-epoch probe; see
benchmarks/evaluate.py `setup`), exported with `export_run` for snapid and loaded eagerly in torch
for the baseline. Photos: 2.5 MP phone-size JPEGs (flowers12 upscaled, benchmarks/decode.py).
Load: async httpx clients on loopback, each sending one photo at a time in a loop, for --seconds at
1, 4 and 16 concurrent clients, after a warm-up. Reported: requests/s, p50 and p99 latency, errors.
Also: the offline rate of the very decode + inference code the server runs (one photo at a time in
this process, no HTTP), to show what the HTTP and batching machinery costs at 1 client.

Targets (issue 5): >= 4x the naive server's throughput at 16 clients; p99 at 16 clients < 3x p50 at
1 client; server rate at 1 client >= 0.8x the offline rate. The load generator shares the CPU with
the servers, which costs both sides alike.

    .venv/bin/python benchmarks/serve.py              # ~3 minutes on 2 cores
    .venv/bin/python benchmarks/serve.py --seconds 15 --json serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import make_photos, machine_info, photo_list, print_machine, snapid_commit, write_json  # noqa: E402
from evaluate import setup  # noqa: E402

from snapid import images  # noqa: E402
from snapid.serve.services.model import load_model  # noqa: E402
from snapid.serve.services.preprocess import prepare_photo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 4, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, url: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"server did not start: {' '.join(cmd)}\n{log.read_text()[-2000:]}")


async def load(url: str, field: str, photos: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` loops posting photos for ``seconds`` (after 2 warm-up requests each)."""
    latencies: list[float] = []
    errors = 0

    async def client(k: int, c: httpx.AsyncClient, until: float | None, warm: int = 0):
        nonlocal errors
        i = k
        while (until is not None and time.monotonic() < until) or (until is None and i - k < warm * clients):
            photo = photos[i % len(photos)]
            i += clients
            t = time.perf_counter()
            r = await c.post(url, files={field: ("photo.jpg", photo, "image/jpeg")})
            if until is not None:
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        await asyncio.gather(*(client(k, c, None, warm=2) for k in range(clients)))
        started = time.monotonic()
        await asyncio.gather(*(client(k, c, started + seconds) for k in range(clients)))
        elapsed = time.monotonic() - started
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(ms), "rps": len(ms) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors}


def offline_rate(bundle: Path, photos: list[bytes], seconds: float) -> float:
    """The server's own decode + inference code, one photo at a time, no HTTP (images/s)."""
    model = load_model(bundle)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        x = prepare_photo(photos[done % len(photos)], model.spec, images.DEFAULT_LIMITS)
        model.probabilities(x[None])
        done += 1
    return done / (time.perf_counter() - started)


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"  {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'requests':>8}")
    for r in rows:
        print(f"  {r['clients']:>7} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>6} {r['requests']:>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency level")
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    photos = [p.read_bytes() for p in photo_list(make_photos(args.photos, workers=args.workers), args.photos)]
    with tempfile.TemporaryDirectory(prefix="snapid-serve-bench-") as tmp:
        tmp = Path(tmp)
        print("training a quick mobilenet_v2 run on flowers12 and exporting it ...", flush=True)
        ws, engine = setup(tmp, args.workers)
        from snapid.export.export import export_run
        bundle = export_run("bench", workspace=ws, engine=engine).path
        env = {**os.environ, "SNAPID_HOME": str(ws.home), "PYTHONPATH": str(ROOT)}
        results = {}
        for name, cmd, path, field in (
            ("snapid", [sys.executable, "-m", "snapid", "serve", str(bundle), "--no-reload"], "/api/v1/predict", "files"),
            ("naive", [sys.executable, "benchmarks/baseline_server.py"], "/predict", "file"),
        ):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            ready = "/healthz/ready" if name == "snapid" else "/docs"
            env_run = {**env, "BASELINE_HOME": str(ws.home), "BASELINE_RUN": "bench"}
            proc = start(cmd + ["--port", str(port)], env_run, base + ready, tmp / f"{name}.log")
            try:
                results[name] = [asyncio.run(load(base + path, field, photos, c, args.seconds)) for c in LEVELS]
            finally:
                proc.terminate()
                proc.wait(60)
            print_rows(f"{name} server", results[name])
        offline = offline_rate(bundle, photos, args.seconds)
    ours, naive = {r["clients"]: r for r in results["snapid"]}, {r["clients"]: r for r in results["naive"]}
    speedup = ours[16]["rps"] / naive[16]["rps"]
    tail = ours[16]["p99_ms"] / ours[1]["p50_ms"]
    vs_offline = ours[1]["rps"] / offline
    print(f"\nthroughput at 16 clients: {ours[16]['rps']:.1f} vs naive {naive[16]['rps']:.1f} req/s "
          f"= {speedup:.2f}x (target >= 4x)")
    print(f"p99 at 16 clients / p50 at 1 client: {ours[16]['p99_ms']:.0f} / {ours[1]['p50_ms']:.0f} ms "
          f"= {tail:.2f} (target < 3)")
    print(f"server at 1 client vs offline decode+inference: {ours[1]['rps']:.1f} vs {offline:.1f} /s "
          f"= {vs_offline:.2f}x (target >= 0.8x)")
    write_json(args.json, {"machine": info, "commit": snapid_commit(), "snapid": results["snapid"], "naive": results["naive"],
                           "offline_rps": offline, "speedup_16": speedup, "p99_16_over_p50_1": tail, "vs_offline_1": vs_offline})
    return 0


if __name__ == "__main__":
    sys.exit(main())
