"""Soak: `snapid serve` for --minutes under a mix of traffic and faults, on loopback only, bounded.

Traffic (--clients workers, each one request at a time): good photos (some with consent, so they are
kept), every kind of bad input of BAD_INPUTS.md that a client can send, feedback on acknowledged
predictions, hand-off sessions with an event stream and a phone upload, the dashboard API, and now
and then a burst past the queue (overload). Faults: the workspace database write-locked for a few
seconds every --lock-every seconds, the bundle hot-swapped twice (a new export over the served
folder), and the server killed with SIGKILL at 80 % of the run and restarted.

Reported: requests by kind and status, p50/p99 of good predictions, resident memory after warm-up and
at the end (before the kill, and of the restarted server), and, after the run, whether every feedback
and kept photo the server acknowledged is in the database with its file.
Targets (issue 17): no 5xx other than 503; memory growth under 10 % after warm-up; nothing
acknowledged lost.

    .venv/bin/python benchmarks/soak.py                 # ten minutes, plus about two to set up
    .venv/bin/python benchmarks/soak.py --minutes 2 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import signal
import sqlite3
import struct
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import machine_info, make_photos, photo_list, print_machine, snapid_commit, write_json
from evaluate import setup
from serve import free_port, start

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 0.1          # share of the run before the first memory reading
KILL_AT = 0.8          # share of the run at which the server is killed with SIGKILL
SWAPS_AT = (1 / 3, 2 / 3)


def png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header declares width x height, with one tiny IDAT (a decompression-bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def bad_inputs(good: bytes) -> list[tuple[str, list[tuple[str, bytes, str]], dict]]:
    """(name, files, extra request options) for each bad input a client can send."""
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(tiny, "PNG")
    bomb = b"k\0\0" + zlib.compress(b"\0" * (20 << 20), 9)   # a zTXt chunk that inflates to 20 MB
    ztxt = png(64, 64,
               extra=struct.pack(">I", len(bomb)) + b"zTXt" + bomb + struct.pack(">I", zlib.crc32(b"zTXt" + bomb)))
    flipped = bytearray(good)
    for i in range(200, len(flipped), 997):
        flipped[i] ^= 0x5A
    return [
        ("empty_file", [("files", ("a.jpg", b"", "image/jpeg"))], {}),
        ("text_as_jpeg", [("files", ("a.jpg", b"<html>hello</html>" * 20, "image/jpeg"))], {}),
        ("truncated_jpeg", [("files", ("a.jpg", good[: len(good) // 3], "image/jpeg"))], {}),
        ("bit_flips", [("files", ("a.jpg", bytes(flipped), "image/jpeg"))], {}),
        ("too_small", [("files", ("a.png", tiny.getvalue(), "image/png"))], {}),
        ("pixel_bomb", [("files", ("a.png", png(30000, 30000), "image/png"))], {}),
        ("ztxt_bomb", [("files", ("a.png", ztxt, "image/png"))], {}),
        ("tiff", [("files", ("a.tif", b"II*\0" + b"\0" * 200, "image/tiff"))], {}),
        ("eps", [("files", ("a.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n" + b"0" * 200, "application/postscript"))], {}),
        ("too_many_files", [("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(6)], {}),
        ("wrong_field", [("photo", ("a.jpg", good, "image/jpeg"))], {}),
        ("over_body_cap", [("files", ("a.jpg", b"\xff\xd8" + os.urandom(11 << 20), "image/jpeg"))], {}),
        ("nul_filename", [("files", ("a\0.jpg", good, "image/jpeg"))], {}),
        ("traversal_filename", [("files", ("../../etc/passwd", good, "image/jpeg"))], {}),
    ]


class Soak:
    def __init__(self, base: str, photos: list[bytes], seconds: float, clients: int, rng: random.Random):
        self.base, self.photos, self.seconds, self.clients, self.rng = base, photos, seconds, clients, rng
        self.counts: Counter = Counter()          # (kind, status) → requests
        self.latencies: list[float] = []          # good predictions answered 200
        self.feedback_ok: list[str] = []          # feedback ids the server acknowledged
        self.kept: list[str] = []                 # prediction ids of consented photos answered 200
        self.predictions: list[str] = []
        self.bad = bad_inputs(photos[0])
        self.stop_at = 0.0

    async def run(self, until: float) -> None:
        self.stop_at = until
        limits = httpx.Limits(max_connections=self.clients * 4 + 60, max_keepalive_connections=self.clients * 2)
        async with httpx.AsyncClient(base_url=self.base, timeout=60, limits=limits) as client:
            await asyncio.gather(*(self.worker(client, k) for k in range(self.clients)))

    def note(self, kind: str, status: int | str) -> None:
        self.counts[(kind, status)] += 1

    async def call(self, kind: str, coro):
        try:
            response = await coro
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            self.note(kind, type(exc).__name__)   # a restart in progress: connection refused or reset
            await asyncio.sleep(0.2)
            return None
        self.note(kind, response.status_code)
        return response

    async def worker(self, client: httpx.AsyncClient, k: int) -> None:
        actions = [(self.good, 55), (self.bad_input, 15), (self.feedback, 10), (self.handoff, 5), (self.dashboard, 10),
                   (self.burst, 1)]
        funcs, weights = zip(*actions, strict=True)
        while time.monotonic() < self.stop_at:
            await self.rng.choices(funcs, weights)[0](client)

    async def good(self, client: httpx.AsyncClient) -> None:
        consent = self.rng.random() < 0.2
        photo = self.rng.choice(self.photos)
        started = time.perf_counter()
        r = await self.call("predict", client.post(f"/api/v1/predict?consent={str(consent).lower()}",
                                                   files=[("files", ("p.jpg", photo, "image/jpeg"))]))
        if r is not None and r.status_code == 200:
            self.latencies.append(time.perf_counter() - started)
            pid = r.json()["prediction_id"]
            self.predictions.append(pid)
            if consent and r.json().get("kept", True):
                self.kept.append(pid)

    async def bad_input(self, client: httpx.AsyncClient) -> None:
        name, files, _ = self.rng.choice(self.bad)
        await self.call(f"bad:{name}", client.post("/api/v1/predict", files=files))

    async def feedback(self, client: httpx.AsyncClient) -> None:
        if not self.predictions:
            return
        body = {"prediction_id": self.rng.choice(self.predictions[-200:]), "client_key": uuid.uuid4().hex[:16],
                "not_in_list": True}
        r = await self.call("feedback", client.post("/api/v1/feedback", json=body))
        if r is not None and r.status_code in (200, 201):
            self.feedback_ok.append(r.json()["feedback_id"])

    async def handoff(self, client: httpx.AsyncClient) -> None:
        r = await self.call("handoff:create", client.post("/api/v1/sessions"))
        if r is None or r.status_code != 201:
            return
        made = r.json()
        token = made["phone_url"].rsplit("/m/", 1)[1]
        sid, key = made["session_id"], made["desktop_key"]

        async def listen() -> None:
            try:
                async with client.stream("GET", f"/api/v1/sessions/{sid}/events", headers={"X-Snapid-Key": key},
                                         timeout=10) as stream:
                    self.note("handoff:events", stream.status_code)
                    async for line in stream.aiter_lines():
                        if line.startswith("event: upload"):
                            return
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                self.note("handoff:events", type(exc).__name__)

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.2)
        await self.call("handoff:upload",
                        client.post(f"/api/v1/sessions/{sid}/upload", headers={"X-Snapid-Token": token},
                                    files=[("files",
                                            ("p.jpg", self.rng.choice(self.photos), "image/jpeg"))]))
        await asyncio.wait_for(listener, timeout=15) if not listener.done() else None

    async def dashboard(self, client: httpx.AsyncClient) -> None:
        path = self.rng.choice(["/api/v1/runs", "/api/v1/model", "/healthz/ready", "/metrics", "/"])
        await self.call(f"get:{path}", client.get(path))

    async def burst(self, client: httpx.AsyncClient) -> None:
        """40 predictions at once: past the queue, so some must get 503 with Retry-After."""
        async def one() -> None:
            r = await self.call("burst", client.post("/api/v1/predict", files=[
                ("files", ("p.jpg", self.rng.choice(self.photos), "image/jpeg"))]))
            if r is not None and r.status_code == 503 and "retry-after" not in r.headers:
                self.note("burst", "503 without Retry-After")
        await asyncio.gather(*(one() for _ in range(40)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def lock_database(path: Path, every: float, hold: float, stop: threading.Event, log: list) -> None:
    """Every ``every`` s, hold an exclusive write lock on the SQLite database for ``hold`` s."""
    while not stop.wait(every):
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            log.append(time.monotonic())
            stop.wait(hold)
            con.execute("ROLLBACK")
        finally:
            con.close()


def verify(home: Path, feedback_ids: list[str], kept: list[str]) -> dict:
    """Acknowledged feedback rows, and kept photos (row and file), still there after the kill."""
    con = sqlite3.connect(home / "snapid.db")
    try:
        stored_feedback = {row[0] for row in con.execute("SELECT id FROM feedback")}
        uploads = {}
        for pid, sha in con.execute("SELECT prediction_id, sha256 FROM uploads"):
            uploads.setdefault(pid, []).append(sha)
    finally:
        con.close()
    lost_feedback = [f for f in set(feedback_ids) if f not in stored_feedback]
    lost_photos = [p for p in set(kept) if p not in uploads
                   or not all((home / "uploads" / s[:2] / f"{s}.jpg").is_file() for s in uploads[p])]
    return {"feedback_acknowledged": len(set(feedback_ids)), "feedback_lost": len(lost_feedback),
            "photos_acknowledged": len(set(kept)), "photos_lost": len(lost_photos)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--lock-every", type=float, default=60.0, help="seconds between database write locks")
    parser.add_argument("--lock-for", type=float, default=3.0, help="seconds each lock is held")
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    photos = [p.read_bytes() for p in photo_list(make_photos(args.photos, workers=2), args.photos)]
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="snapid-soak-") as tmp:
        tmp = Path(tmp)
        print("training a quick mobilenet_v2 run on flowers12 and exporting it ...", flush=True)
        ws, engine = setup(tmp, 2)
        from snapid.export.from_run import export_run

        bundle = ws.bundles / "soak"
        export_run("bench", bundle, workspace=ws, engine=engine)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SNAPID_HOME": str(ws.home), "PYTHONPATH": str(ROOT), "SNAPID_QUEUE_SIZE": "8",
               "SNAPID_RELOAD_POLL_S": "1", "SNAPID_DRAIN_S": "0.2"}
        env.pop("SNAPID_DB_URL", None)
        cmd = [sys.executable, "-m", "snapid", "serve", str(bundle), "--port", str(port)]
        server = start(cmd, env, base + "/healthz/ready", tmp / "server.log")
        soak = Soak(base, photos, seconds, args.clients, random.Random(args.seed))
        stop, locks, swaps, memory = threading.Event(), [], [], {}
        locker = threading.Thread(target=lock_database, args=(ws.database, args.lock_every, args.lock_for, stop, locks),
                                  daemon=True)
        started = time.monotonic()

        def at(share: float) -> float:
            return started + share * seconds

        def faults() -> None:
            nonlocal server
            plan = sorted([(at(WARM_UP), "memory"), *[(at(s), "swap") for s in SWAPS_AT], (at(KILL_AT), "kill")])
            for when, what in plan:
                if stop.wait(max(0.0, when - time.monotonic())):
                    return
                if what == "memory":
                    memory["after_warm_up_mb"] = rss_mb(server.pid)
                elif what == "swap":
                    export_run("bench", bundle, workspace=ws, engine=engine)  # atomic replace: the server reloads it
                    swaps.append(time.monotonic() - started)
                else:
                    memory["before_kill_mb"] = rss_mb(server.pid)
                    server.send_signal(signal.SIGKILL)
                    server.wait()
                    server = start(cmd, env, base + "/healthz/ready", tmp / "server-restarted.log")

        series: list[tuple[float, float]] = []   # (seconds, MB) every 10 s: whether growth levels off

        def sample() -> None:
            while not stop.wait(10.0):
                try:
                    series.append((time.monotonic() - started, rss_mb(server.pid)))
                except (OSError, ValueError):
                    pass  # the server is being restarted

        threading.Thread(target=sample, daemon=True).start()
        locker.start()
        chaos = threading.Thread(target=faults, daemon=True)
        chaos.start()
        print(f"soaking for {args.minutes:g} min with {args.clients} clients ...", flush=True)
        asyncio.run(soak.run(started + seconds))
        stop.set()
        chaos.join()
        locker.join()
        memory["end_of_restarted_mb"] = rss_mb(server.pid)
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        checked = verify(ws.home, soak.feedback_ok, soak.kept)
    statuses = Counter()
    for (_, status), n in soak.counts.items():
        statuses[status] += n
    server_errors = {f"{kind} {status}": n for (kind, status), n in soak.counts.items()
                     if isinstance(status, int) and status >= 500 and status != 503}
    ms = np.asarray(soak.latencies) * 1000
    growth = memory["before_kill_mb"] / memory["after_warm_up_mb"] - 1
    # the same growth read as medians of one-minute windows (single readings catch whatever is in flight)
    window = [mb for t, mb in series if WARM_UP * seconds <= t < WARM_UP * seconds + 60], \
        [mb for t, mb in series if KILL_AT * seconds - 60 <= t < KILL_AT * seconds]
    medians = [float(np.median(w)) if w else float("nan") for w in window]
    growth_medians = medians[1] / medians[0] - 1
    print("\nrequests by kind and status:")
    for (kind, status), n in sorted(soak.counts.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        print(f"  {kind:<28} {status!s:<24} {n:>7}")
    print(f"\nall: {sum(soak.counts.values())} requests; by status {dict(sorted(statuses.items(), key=str))}")
    print(f"good predictions: {len(ms)}; p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms")
    print(f"database write-locked {len(locks)} times for {args.lock_for:g} s; bundle swapped at "
          f"{', '.join(f'{s:.0f} s' for s in swaps)}; server killed (SIGKILL) and restarted at "
          f"{KILL_AT * seconds:.0f} s")
    print(f"5xx other than 503: {sum(server_errors.values())} (target 0) {server_errors or ''}")
    print(f"resident memory: {memory['after_warm_up_mb']:.0f} MB after warm-up, {memory['before_kill_mb']:.0f} MB "
          f"before the kill: {100 * growth:+.1f} % (target < +10 %); restarted server at the end "
          f"{memory['end_of_restarted_mb']:.0f} MB")
    print(f"  as medians of one-minute windows: {medians[0]:.0f} MB after warm-up, {medians[1]:.0f} MB before the "
          f"kill: {100 * growth_medians:+.1f} %")
    print("resident memory every 30 s (MB): " + " ".join(f"{t:.0f}s:{mb:.0f}" for t, mb in series[2::3]))
    print(f"acknowledged and lost after the kill: feedback {checked['feedback_lost']} of "
          f"{checked['feedback_acknowledged']}, kept photos {checked['photos_lost']} of "
          f"{checked['photos_acknowledged']} (target 0)")
    write_json(args.json, {"machine": info, "commit": snapid_commit(), "minutes": args.minutes, "clients": args.clients,
                           "counts": {f"{k} {s}": n for (k, s), n in soak.counts.items()},
                           "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                           "server_errors": server_errors, "memory": memory, "memory_series": series, "growth": growth,
                           "growth_window_medians": growth_medians,
                           "verify": checked, "locks": len(locks), "swaps": swaps})
    ok = not server_errors and growth < 0.10 and not checked["feedback_lost"] and not checked["photos_lost"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
