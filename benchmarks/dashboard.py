"""Benchmark: the dashboard's API with 1,000 runs and 100,000 epoch rows (target: every page's API work < 1 s).

A temporary SQLite workspace is filled in bulk (1,000 runs over 10 datasets and 5 models, 100 epochs each,
a test evaluation on a fifth of them), then the calls the pages make are timed through httpx against the
ASGI app (no network; the median of --repeats after one warm-up):

    runs page      GET /api/v1/runs                      (newest first, page of 50, totals, facets)
                   GET /api/v1/runs?dataset=…&status=…&sort=best_metric
                   GET /api/v1/runs?since=…&until=…&sort=duration
                   GET /api/v1/runs?sort=name&order=asc&offset=900
    run page       GET /api/v1/runs/{id}  +  GET /api/v1/runs/{id}/epochs
    live poll      GET /api/v1/runs/{id}/epochs?after=95

Baselines: (1) the same API on a copy of the database without the dashboard's indexes on runs
(created_at; dataset, created_at); (2) the naive way on the existing track functions: load every run,
filter, sort and page in Python, count each listed run's epochs by loading them; poll by loading every
epoch of the run and keeping those after N; timed by direct calls against snapid's service functions.

    .venv/bin/python benchmarks/dashboard.py               # ~1 minute on 2 cores
    .venv/bin/python benchmarks/dashboard.py --json dashboard.json
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import machine_info, print_machine, print_table, snapid_commit, write_json  # noqa: E402

from snapid.config import Settings  # noqa: E402
from snapid.serve.app import create_app  # noqa: E402
from snapid.serve.services import runs_view  # noqa: E402
from snapid.track import queries  # noqa: E402
from snapid.track import runs as track  # noqa: E402
from snapid.track.db import get_engine, transaction  # noqa: E402
from snapid.track.tables import ArtifactRow, EpochRow, RunRow  # noqa: E402

TARGET_S = 1.0
DASHBOARD_INDEXES = ("ix_runs_created_at", "ix_runs_dataset_created_at")
DATASETS = [f"dataset-{i}" for i in range(10)]
MODELS = ["mobilenet_v2", "efficientnet_lite0", "resnet18", "convnext_tiny", "custom_cnn"]
STATUSES = ["completed"] * 6 + ["failed", "stopped", "running", "queued"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def fill(home: Path, n_runs: int, epochs_per_run: int, seed: int = 0):
    """Bulk-insert runs, their epochs and some evaluation artifacts; returns the engine."""
    rng = random.Random(seed)
    engine = get_engine(f"sqlite:///{home / 'snapid.db'}")
    runs = []
    for i in range(n_runs):
        created = T0 + timedelta(minutes=rng.randrange(365 * 24 * 60))
        status = rng.choice(STATUSES)
        started = None if status == "queued" else created + timedelta(seconds=5)
        ended = started + timedelta(seconds=rng.randrange(60, 20000)) if status not in ("queued", "running") else None
        runs.append(dict(id=i + 1, name=f"run-{i:04d}", dataset=rng.choice(DATASETS), dataset_version=1,
                         model=rng.choice(MODELS), kind="train", config={"lr": 0.01, "epochs": epochs_per_run},
                         status=status, run_dir="", monitor="val_top1", best_metric=rng.random(),
                         best_epoch=rng.randrange(epochs_per_run), summary={}, error="", host="bench",
                         created_at=created, started_at=started, ended_at=ended))
    with transaction(engine) as s:
        s.execute(insert(RunRow), runs)
        for run in runs:
            s.execute(insert(EpochRow), [dict(run_id=run["id"], epoch=e, phase="finetune", train_loss=1 / (e + 1),
                                              val_loss=1.1 / (e + 1), top1=e / epochs_per_run, top5=0.9, macro_f1=0.5,
                                              lr=1e-3, seconds=2.0, images_per_s=300.0, created_at=run["created_at"])
                                         for e in range(epochs_per_run)])
        s.execute(insert(ArtifactRow), [dict(run_id=r["id"], kind="eval_test", path="", sha256="",
                                             meta={"top1": 0.9, "macro_f1": 0.88}, created_at=T0)
                                        for r in runs[::5]])
    return engine


def api_calls(run_id: int, last_epoch: int) -> dict[str, list[str]]:
    """The requests each page makes, by page."""
    since, until = (f"{(T0 + timedelta(days=d)):%Y-%m-%dT%H:%M:%SZ}" for d in (90, 120))
    return {
        "runs page (default)": ["/api/v1/runs"],
        "runs page (dataset+status, by best)": [
            "/api/v1/runs?dataset=dataset-3&status=completed&sort=best_metric&order=desc"],
        "runs page (date range, by duration)": [f"/api/v1/runs?since={since}&until={until}&sort=duration"],
        "runs page (by name, offset 900)": ["/api/v1/runs?sort=name&order=asc&offset=900"],
        "run page (detail + all epochs)": [f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/epochs"],
        "live poll (epochs after N)": [f"/api/v1/runs/{run_id}/epochs?after={last_epoch - 5}"],
    }


async def time_pages(home: Path, pages: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """Median seconds per page (its requests in sequence), through httpx on the ASGI app."""
    app = create_app(Settings(home=home))
    out = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        for page, urls in pages.items():
            samples = []
            for i in range(repeats + 1):
                start = time.perf_counter()
                for url in urls:
                    response = await client.get(url)
                    assert response.status_code == 200, (url, response.text)
                if i:  # the first is a warm-up
                    samples.append(time.perf_counter() - start)
            out[page] = statistics.median(samples)
    return out


def without_dashboard_indexes(home: Path, copy: Path) -> None:
    """A copy of the database as it was before the dashboard: its indexes on runs dropped."""
    copy.mkdir(parents=True)
    with sqlite3.connect(home / "snapid.db") as src, sqlite3.connect(copy / "snapid.db") as dst:
        src.backup(dst)  # a consistent copy, WAL included
    with get_engine(Settings(home=copy).resolved_db_url()).begin() as conn:
        for name in DASHBOARD_INDEXES:
            conn.execute(text(f"DROP INDEX {name}"))


def time_without_indexes(home: Path, pages: dict[str, list[str]], repeats: int) -> dict[str, float]:
    restore = queries.ensure_indexes
    queries.ensure_indexes = lambda engine: None  # or the API would add them back on its first call
    try:
        return asyncio.run(time_pages(home, pages, repeats))
    finally:
        queries.ensure_indexes = restore


def naive_runs_page(engine, *, dataset=None, status=None, key="created_at", reverse=True, offset=0, limit=50) -> list:
    with transaction(engine) as s:
        rows = track.list_runs(s, dataset=dataset, status=status)
        present = sorted((r for r in rows if r[key] is not None), key=lambda r: r[key], reverse=reverse)
        page = (present + [r for r in rows if r[key] is None])[offset:offset + limit]
        return [{**r, "epochs": len(track.epochs(s, name=r["name"]))} for r in page]


def naive_poll(engine, name: str, after: int) -> list:
    with transaction(engine) as s:
        return [e for e in track.epochs(s, name=name) if e["epoch"] > after]


def _median_seconds(call, repeats: int) -> float:
    call()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_direct(engine, name: str, last_epoch: int, repeats: int) -> dict[str, dict[str, float]]:
    """The naive functions against snapid's service functions, both called directly (no HTTP), same work."""
    where = queries.RunFilter(dataset="dataset-3", status="completed")
    pairs = {
        "runs page (default)": (lambda: naive_runs_page(engine),
                                lambda: runs_view.list_runs(engine, where=queries.RunFilter(), sort="created_at",
                                                            descending=True, limit=50, offset=0)),
        "runs page (dataset+status, by best)": (
            lambda: naive_runs_page(engine, dataset="dataset-3", status="completed", key="best_metric"),
            lambda: runs_view.list_runs(engine, where=where, sort="best_metric", descending=True, limit=50, offset=0)),
        "live poll (epochs after N)": (lambda: naive_poll(engine, name, last_epoch - 5),
                                       lambda: runs_view.run_epochs(engine, name, after=last_epoch - 5, limit=1000)),
    }
    return {label: {"naive": _median_seconds(naive, repeats), "snapid": _median_seconds(ours, repeats)}
            for label, (naive, ours) in pairs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100, help="epoch rows per run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    with tempfile.TemporaryDirectory(prefix="snapid-dash-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        start = time.perf_counter()
        engine = fill(home, args.runs, args.epochs)
        print(f"filled {args.runs} runs, {args.runs * args.epochs} epoch rows in {time.perf_counter() - start:.1f} s")
        run_id, name, last = args.runs // 2, f"run-{args.runs // 2 - 1:04d}", args.epochs - 1
        pages = api_calls(run_id, last)
        ours = asyncio.run(time_pages(home, pages, args.repeats))
        without_dashboard_indexes(home, Path(tmp) / "plain")
        plain = time_without_indexes(Path(tmp) / "plain", pages, args.repeats)
        direct = time_direct(engine, name, last, args.repeats)
    rows = []
    for page, seconds in ours.items():
        rows.append({"figure": f"API {page}", "value": f"{seconds * 1000:.1f} ms",
                     "baseline": f"{plain[page] * 1000:.1f} ms without the runs indexes",
                     "ratio": f"{plain[page] / seconds:.1f}x", "target": "< 1000 ms", "met": seconds < TARGET_S})
    for page, pair in direct.items():
        rows.append({"figure": f"direct {page}", "value": f"{pair['snapid'] * 1000:.1f} ms",
                     "baseline": f"{pair['naive'] * 1000:.1f} ms naive (load all, filter in Python)",
                     "ratio": f"{pair['naive'] / pair['snapid']:.1f}x", "target": "", "met": None})
    print_table(rows)
    write_json(args.json,
               {"machine": {**info, "commit": snapid_commit()}, "runs": args.runs, "epochs": args.runs * args.epochs,
                "snapid_s": ours, "without_indexes_s": plain, "direct_s": direct})


if __name__ == "__main__":
    main()
