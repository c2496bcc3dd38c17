"""Champion/challenger: both runs scored on the same fixed test split; only a better one is promoted,
and a server watching the promoted bundle folder picks it up without a restart."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.feedback.promote import NotComparable, promote, promoted_bundle_path
from snapid.serve.app import create_app
from snapid.track import feedback as track
from snapid.track.db import transaction
from tests.serve.conftest import coloured, files


@pytest.fixture
def good_and_bad(make_run):
    return make_run("good", probe_epochs=10), make_run("bad", probe_epochs=1, probe_lr=1e-6)


def decisions(engine) -> list[dict]:
    with transaction(engine) as s:
        return track.list_promotions(s, dataset="shapes")


def test_promotion_refuses_a_worse_candidate(good_and_bad, engine, home):
    good, bad = good_and_bad
    result = promote(bad, over=good, workspace=home, engine=engine)
    assert result["promoted"] is False and result["candidate_top1"] < result["current_top1"]
    assert "below the margin" in result["reason"] and result["bundle_path"] == ""
    boot = result["details"]["bootstrap"]
    assert boot["n"] == result["details"]["n"]
    assert boot["diff"] == pytest.approx(result["candidate_top1"] - result["current_top1"])
    assert not promoted_bundle_path(home, "shapes").exists()
    assert [d["promoted"] for d in decisions(engine)] == [False]


def test_promotion_needs_the_margin(good_and_bad, engine, home):
    good, bad = good_and_bad
    with pytest.raises(NotComparable):
        promote(good, over=good, workspace=home, engine=engine)
    result = promote(good, over=bad, workspace=home, engine=engine, margin=0.999)  # a gain no run can show
    assert result["promoted"] is False and result["candidate_top1"] > result["current_top1"]


def test_better_candidate_promoted_and_served_without_restart(good_and_bad, engine, home):
    good, bad = good_and_bad
    target = promoted_bundle_path(home, "shapes")
    settings = Settings(home=home.home, reload_poll_s=0.1, drain_s=0.2)
    with TestClient(create_app(settings, bundle=target), raise_server_exceptions=False) as client:
        assert client.get("/health/ready").status_code == 503  # nothing promoted yet
        result = promote(good, over=bad, workspace=home, engine=engine)
        assert result["promoted"] is True and result["bundle_path"] == str(target)
        deadline = time.monotonic() + 20
        while client.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        model = client.get("/health/ready").json()["model"]
        assert model["name"] == good and model["version"] == result["details"]["bundle_version"]
        answer = client.post("/api/v1/predict", files=files(coloured((220, 40, 40), size=(48, 48))))
        assert answer.status_code == 200 and answer.json()["model"]["name"] == good
    assert [d["promoted"] for d in decisions(engine)] == [True]


def test_runs_on_different_test_splits_are_not_compared(make_run, engine, home, tmp_path):
    from snapid.importer import import_dataset
    from tests.helpers import shapes_dataset

    first = make_run("v1-run")
    import_dataset(shapes_dataset(tmp_path / "reshuffled"), name="shapes", engine=engine, seed=7)  # a new split
    second = make_run("v2-run")
    with pytest.raises(NotComparable, match="test split differs"):
        promote(second, over=first, workspace=home, engine=engine)
    assert decisions(engine) == []


def test_cli_promote_refusal_exits_2_with_the_decision(good_and_bad, engine, home):
    from typer.testing import CliRunner

    from snapid.cli import app

    good, bad = good_and_bad
    result = CliRunner().invoke(app, ["promote", bad, "--over", good, "--json"])
    assert result.exit_code == 2, result.output
    decision = json.loads(result.stdout)
    assert decision["promoted"] is False and decision["candidate"] == bad and decision["current"] == good
