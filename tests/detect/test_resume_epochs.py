"""`snapid detect train --resume RUN --epochs N`: a new epoch budget for a stopped or completed run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapid.detect.train import train_detector
from snapid.errors import SnapidError
from snapid.track import runs as track
from snapid.track.db import transaction
from tests.detect.test_train import Epochs

TINY = {"size": 96, "batch_size": 4, "patience": 10, "augment": "none", "seed": 0}


def _run(engine, name: str) -> tuple[dict, list[dict]]:
    with transaction(engine) as s:
        return track.get_run(s, name=name), track.epochs(s, name=name)


@pytest.mark.slow
def test_a_completed_run_continues_with_more_epochs(pills, home, engine):
    train_detector(pills, workspace=home, engine=engine, epochs=1, name="det", **TINY)
    assert _run(engine, "det")[0]["status"] == "completed"

    for epochs, match in ((1, "already completed"), (0, "epochs=0 is out of range")):
        with pytest.raises(SnapidError, match=match):
            train_detector("", workspace=home, engine=engine, resume="det", epochs=epochs)
    with pytest.raises(SnapidError, match="already completed; start a new one with --name, or give --epochs above 1"):
        train_detector("", workspace=home, engine=engine, resume="det")
    run, rows = _run(engine, "det")
    assert run["status"] == "completed" and run["config"]["epochs"] == 1 and len(rows) == 1   # refusals touch nothing

    reporter = Epochs()
    summary = train_detector("", workspace=home, engine=engine, resume="det", epochs=2, reporter=reporter)
    assert any("epoch budget 1 → 2" in n for n in reporter.notes)
    assert [r["epoch"] for r in reporter.records] == [1] and summary["name"] == "det"
    run, rows = _run(engine, "det")
    assert run["status"] == "completed" and run["config"]["epochs"] == 2
    assert [r["epoch"] for r in rows] == [0, 1]
    last = json.loads((Path(home.runs) / "det" / "last.json").read_text())
    assert last["epoch"] == 1 and last["config"]["epochs"] == 2


@pytest.mark.slow
def test_fewer_epochs_than_done_is_refused_naming_both(pills, home, engine):
    with pytest.raises(KeyboardInterrupt):   # Ctrl-C after the second epoch of three
        train_detector(pills, workspace=home, engine=engine, epochs=3, name="det", reporter=Epochs(stop_after=1),
                       **TINY)
    with pytest.raises(SnapidError, match="--epochs 1 is fewer than the 2 epochs run 'det' has already done"):
        train_detector("", workspace=home, engine=engine, resume="det", epochs=1)
    assert _run(engine, "det")[0]["status"] == "stopped"
    reporter = Epochs()
    # the budget lowered to what was done
    train_detector("", workspace=home, engine=engine, resume="det", epochs=2, reporter=reporter)
    run, rows = _run(engine, "det")
    assert reporter.records == [] and run["status"] == "completed" and run["config"]["epochs"] == 2 and len(rows) == 2
