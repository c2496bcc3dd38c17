"""Benchmark: `snapid serve` against the naive server (benchmarks/baseline_server.py), same model,
same photos, same machine, one run.

Model: a quick mobilenet_v2 run on flowers12 (offline ImageNet weights, 3-epoch probe; see
benchmarks/evaluate.py `setup`), exported with `export_run` for snapid and loaded eagerly in torch
for the baseline. Photos: 2.5 MP phone-size JPEGs (flowers12 upscaled, benchmarks/decode.py).
Load: raw asyncio HTTP/1.1 clients on loopback (requests built once), each sending one photo at a time
in a loop, for --seconds at 1, 4 and 16 concurrent clients, after a warm-up. Reported: requests/s, p50
and p99 latency, errors.
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
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import (
    machine_info,
    make_photos,
    photo_list,
    print_machine,
    snapid_commit,
    write_json,
)
from evaluate import setup

from snapid import images
from snapid.serve.services.model import load_model
from snapid.serve.services.preprocess import prepare_photo

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


def multipart_request(path: str, port: int, field: str, photo: bytes) -> bytes:
    """One complete HTTP/1.1 POST of ``photo`` as a multipart form field, built once per photo."""
    boundary = "snapidbenchboundary7d3f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on a kept-alive connection and read its whole response; the status code."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if length is None:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    await reader.readexactly(int(length.group(1)))
    return int(head.split(b" ", 2)[1])


async def load(port: int, path: str, field: str, photos: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` kept-alive connections, each posting one photo at a time for ``seconds`` after 2
    warm-up requests each. The requests are built once and written raw: the load generator shares the
    two cores with the server, so it should spend as little of them as it can (httpx, used before,
    spent about 2 ms of CPU per 216 KB upload encoding the form and parsing the answer)."""
    requests = [multipart_request(path, port, field, p) for p in photos]
    latencies: list[float] = []
    errors = 0
    warm = [asyncio.Event() for _ in range(clients)]
    go = asyncio.Event()
    deadline = 0.0

    async def client(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(k, k + 2 * clients, clients):
                await exchange(reader, writer, requests[i % len(requests)])
            warm[k].set()
            await go.wait()
            i = k
            while time.monotonic() < deadline:
                t = time.perf_counter()
                status = await exchange(reader, writer, requests[i % len(requests)])
                latencies.append(time.perf_counter() - t)
                errors += status != 200
                i += clients
        finally:
            writer.close()

    tasks = [asyncio.create_task(client(k)) for k in range(clients)]
    await asyncio.gather(*(w.wait() for w in warm))
    started = time.monotonic()
    deadline = started + seconds
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(ms), "rps": len(ms) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(proc: subprocess.Popen, port: int, path: str, field: str, photos: list[bytes], clients: int,
             seconds: float) -> dict:
    """One concurrency level, with the server's CPU milliseconds per answered request."""
    before, own_before = cpu_seconds(proc.pid), time.process_time()
    row = asyncio.run(load(port, path, field, photos, clients, seconds))
    row["server_cpu_ms"] = 1000 * (cpu_seconds(proc.pid) - before) / max(1, row["requests"])
    row["client_cpu_ms"] = 1000 * (time.process_time() - own_before) / max(1, row["requests"])
    return row


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
    print(f"  {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'requests':>8} "
          f"{'server CPU ms/req':>17} {'client CPU ms/req':>17}")
    for r in rows:
        print(f"  {r['clients']:>7} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>6} "
              f"{r['requests']:>8} {r['server_cpu_ms']:>17.1f} {r['client_cpu_ms']:>17.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency level")
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="mobilenet_v2",
                        help="backbone of the served run, e.g. efficientnet_lite2+mobilenet_v2 (the default recipe's)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--also-no-references", action="store_true",
                        help="also serve the fp32 run exported with --references 0 (what the reference lookup costs)")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    photos = [p.read_bytes() for p in photo_list(make_photos(args.photos, workers=args.workers), args.photos)]
    with tempfile.TemporaryDirectory(prefix="snapid-serve-bench-") as tmp:
        tmp = Path(tmp)
        print(f"training a quick {args.model} run on flowers12 and exporting it ...", flush=True)
        ws, engine = setup(tmp, args.workers, args.model)
        from snapid.export.from_run import export_run
        bundle = export_run("bench", workspace=ws, engine=engine).path
        # the same run quantised (static int8, `snapid export --int8`); forced: a 3-epoch probe run's
        # val gate is not the point here, its report is printed
        int8 = export_run("bench", ws.home / "bundle-int8", workspace=ws, engine=engine, int8=True, force=True)
        print(f"int8 bundle: {int8.manifest['int8_report']}")
        bare = export_run("bench", ws.home / "bundle-bare", workspace=ws, engine=engine, references=0).path \
            if args.also_no_references else None
        env = {**os.environ, "SNAPID_HOME": str(ws.home), "PYTHONPATH": str(ROOT)}
        results = {}
        for name, cmd, path, field in (
            ("snapid", [sys.executable, "-m", "snapid", "serve", str(bundle), "--no-reload"], "/api/v1/predict",
             "files"),
            ("snapid int8", [sys.executable, "-m", "snapid", "serve", str(int8.path), "--no-reload"], "/api/v1/predict",
             "files"),
            *([("snapid no refs", [sys.executable, "-m", "snapid", "serve", str(bare), "--no-reload"],
                "/api/v1/predict", "files")] if bare else []),
            ("naive", [sys.executable, "benchmarks/baseline_server.py"], "/predict", "file"),
        ):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            ready = "/healthz/ready" if name.startswith("snapid") else "/docs"
            env_run = {**env, "BASELINE_HOME": str(ws.home), "BASELINE_RUN": "bench"}
            proc = start(cmd + ["--port", str(port)], env_run, base + ready, tmp / f"{name}.log")
            try:
                results[name] = [measured(proc, port, path, field, photos, c, args.seconds) for c in LEVELS]
            finally:
                proc.terminate()
                proc.wait(60)
            print_rows(f"{name} server", results[name])
        offline = offline_rate(bundle, photos, args.seconds)
    naive = {r["clients"]: r for r in results["naive"]}
    figures = {}
    for name in [n for n in results if n != "naive"]:
        ours = {r["clients"]: r for r in results[name]}
        figures[name] = {"speedup_16": ours[16]["rps"] / naive[16]["rps"],
                         "p99_16_over_p50_1": ours[16]["p99_ms"] / ours[1]["p50_ms"]}
        print(f"\n{name}: throughput at 16 clients {ours[16]['rps']:.1f} vs naive {naive[16]['rps']:.1f} req/s "
              f"= {figures[name]['speedup_16']:.2f}x (target >= 4x)")
        print(f"{name}: p99 at 16 clients / p50 at 1 client: {ours[16]['p99_ms']:.0f} / {ours[1]['p50_ms']:.0f} ms "
              f"= {figures[name]['p99_16_over_p50_1']:.2f} (target < 3)")
    vs_offline = results["snapid"][0]["rps"] / offline
    print(f"snapid at 1 client vs offline decode+inference: {results['snapid'][0]['rps']:.1f} vs {offline:.1f} /s "
          f"= {vs_offline:.2f}x (target >= 0.8x)")
    write_json(args.json,
               {"machine": info, "commit": snapid_commit(), "snapid": results["snapid"], "naive": results["naive"],
                "snapid_int8": results["snapid int8"], "snapid_no_references": results.get("snapid no refs"),
                "offline_rps": offline, "figures": figures,
                "vs_offline_1": vs_offline})
    return 0


if __name__ == "__main__":
    sys.exit(main())
