"""F1 and F2: a writer process killed with SIGKILL at random moments.

F1: 0 acknowledged feedback lost, 0 duplicates (the idempotency key), integrity_check ok.
F2: after the startup sweep, 0 rows without their file and 0 files without their row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from snapid.feedback.storage import PhotoStore
from snapid.track import feedback as track
from snapid.track.db import transaction
from snapid.track.predictions import record_predictions

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 12

FEEDBACK_WRITER = textwrap.dedent("""
    import sys
    from snapid.feedback.service import record_feedback
    from snapid.track.db import get_engine
    engine = get_engine(sys.argv[1])
    classes = [{"id": "red", "name": "Red"}]
    print("ready", flush=True)
    for line in sys.argv[2:]:
        pid, key = line.split(",")
        record, _ = record_feedback(engine, prediction_id=pid, client_key=key, label="red", classes=classes)
        print(key, record["id"], flush=True)   # acknowledged only after the commit
""")

PHOTO_WRITER = textwrap.dedent("""
    import io, sys
    import numpy as np
    from PIL import Image
    from snapid.feedback.storage import PhotoStore
    from snapid.track.db import get_engine
    store = PhotoStore(sys.argv[2], get_engine(sys.argv[1]))
    rng = np.random.default_rng(int(sys.argv[3]))
    print("ready", flush=True)
    while True:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(buf, "PNG")
        print(store.save(buf.getvalue(), prediction_id=None), flush=True)
""")


def run_and_kill(args: list[str], rng: random.Random) -> list[str]:
    """Start a writer, SIGKILL it 0-500 ms after it is ready; the lines it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0, 0.5))
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    # only whole lines: a kill in the middle of a print leaves a cut last line, which acknowledged nothing
    return [line for line in out.split("\n")[:-1] if line.strip()]


def integrity_ok(engine) -> bool:
    with engine.connect() as c:
        return c.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_f1_kill_9_of_the_feedback_writer_loses_and_duplicates_nothing(engine, home):
    url = f"sqlite:///{home.database}"
    pids = [str(uuid.uuid4()) for _ in range(40)]
    with transaction(engine) as s:
        record_predictions(s, rows=[{"id": p, "model_sha256": "0" * 64} for p in pids])
    work = [f"{p},client-{i % 3:04d}" for i, p in enumerate(pids)] * 3  # every key sent several times
    rng = random.Random(1)
    acknowledged: dict[str, set[str]] = {}
    for _ in range(ROUNDS):
        rng.shuffle(work)
        for line in run_and_kill([FEEDBACK_WRITER, url, *work[:200]], rng):
            key, feedback_id = line.split()
            acknowledged.setdefault(key, set()).add(feedback_id)
    assert integrity_ok(engine)
    with transaction(engine) as s:
        stored, total = track.list_feedback(s, status=None, limit=200)
    assert acknowledged, "no writer lived long enough to acknowledge anything; the harness is broken"
    ids = {f["id"] for f in stored}
    assert all(found <= ids for found in acknowledged.values())              # 0 acknowledged lost
    assert len({(f["prediction_id"]) for f in stored}) == total == len(stored)  # 0 duplicates (one key per pid)


def test_f2_kill_9_during_uploads_leaves_no_row_without_file_after_the_sweep(engine, home):
    url = f"sqlite:///{home.database}"
    rng = random.Random(2)
    acknowledged: list[str] = []
    for round_ in range(ROUNDS // 2):
        acknowledged += run_and_kill([PHOTO_WRITER, url, str(home.uploads), str(round_)], rng)
    store = PhotoStore(home.uploads, engine)
    swept = store.sweep_orphans(min_age_s=0)  # what a restart does
    assert integrity_ok(engine)
    with transaction(engine) as s:
        by_sha = track.uploads_by_sha(s)
    assert swept["rows_without_file"] == 0  # a save never commits a row before its file
    assert all(store.photo(upload_id).is_file() for upload_id in acknowledged)
    files = {p.name.split(".")[0] for p in home.uploads.rglob("*") if p.is_file()}
    assert files == set(by_sha) and all(store.thumb_path(sha).is_file() for sha in by_sha)
