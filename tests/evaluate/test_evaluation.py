"""`snapid eval` end to end on tiny trained runs: the result, the files beside the run, the database."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snapid import metrics
from snapid.errors import SnapidError
from snapid.evaluate import calibrate, evaluation
from snapid.track import runs as track
from snapid.track.db import transaction

SCHEMA = ("run", "split", "tta", "n", "created_at", "top1", "top5", "macro_top1", "macro_top5", "macro_f1",
          "balanced_accuracy", "ece", "ece_uncalibrated", "nll", "temperature", "threshold", "latency_ms", "parameters",
          "per_class", "confusion", "reliability", "reliability_uncalibrated", "long_tail", "coverage", "mistakes")


def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def artifacts(engine, name: str) -> dict:
    with transaction(engine) as s:
        return {a["kind"]: a for a in track.artifacts(s, name=name)}


def run_dir(engine, name: str) -> Path:
    with transaction(engine) as s:
        return Path(track.get_run(s, name=name)["run_dir"])


@pytest.fixture
def evaluated(make_run, home, engine):
    make_run("e")
    return evaluation.evaluate_run("e", workspace=home, engine=engine)


def test_evaluate_run_result_files_and_database(evaluated, engine):
    result = evaluated
    assert all(key in result for key in SCHEMA)
    with transaction(engine) as s:
        summary = track.get_run(s, name="e")["summary"]
    # the same model on the same split as the training's own test figures
    assert result["top1"] == pytest.approx(summary["test_top1"])
    assert result["macro_f1"] == pytest.approx(summary["test_macro_f1"])
    n = result["n"]
    assert n > 0 and sum(r["support"] for r in result["per_class"]) == n
    assert [r["id"] for r in result["per_class"]] == ["disc", "square", "stripes"]
    assert all(r["train_count"] > 0 for r in result["per_class"])
    assert result["confusion"]["format"] == "dense" and np.sum(result["confusion"]["counts"]) == n
    assert sum(b["count"] for b in result["reliability"]) == n
    assert result["coverage"][0]["coverage"] == 1.0
    assert result["coverage"][0]["accuracy"] == pytest.approx(result["top1"])
    assert result["parameters"] > 0 and result["latency_ms"] > 0
    wrong = round(n * (1 - result["top1"]))
    assert len(result["mistakes"]) == min(wrong, evaluation.MAX_MISTAKES)
    losses = [m["loss"] for m in result["mistakes"]]
    assert losses == sorted(losses, reverse=True)
    for m in result["mistakes"]:
        assert m["true"] != m["pred"]
        thumb = Image.open(io.BytesIO(base64.b64decode(m["thumbnail"].split(",", 1)[1])))
        assert thumb.format == "JPEG" and max(thumb.size) <= evaluation.THUMBNAIL_PX

    folder = run_dir(engine, "e")
    assert strict_json((folder / "eval-test.json").read_text()) == result
    preds = np.load(folder / "eval-test-preds.npz")
    assert len(preds["labels"]) == n
    np.testing.assert_array_equal(preds["correct"], preds["preds"] == preds["labels"])
    assert ((preds["probs_true"] >= 0) & (preds["probs_true"] <= 1)).all()
    assert preds["correct"].mean() == pytest.approx(result["top1"])

    stored = artifacts(engine, "e")
    assert stored["eval_test"]["path"] == str(folder / "eval-test.json")
    assert stored["eval_test"]["meta"] == {k: result[k] for k in evaluation.HEADLINE}
    assert stored["calibration"]["meta"]["temperature"] == result["temperature"]  # calibrated on the way


def test_evaluate_again_reuses_calibration_until_the_target_changes(evaluated, home, engine):
    first = calibrate.stored_calibration("e", engine=engine)
    again = evaluation.evaluate_run("e", workspace=home, engine=engine, tta=True)
    assert again["tta"] and again["temperature"] == first["temperature"]
    assert len([k for k in artifacts(engine, "e") if k == "eval_test"]) == 1
    val = evaluation.evaluate_run("e", workspace=home, engine=engine, split="val", target_coverage=0.5)
    assert val["split"] == "val" and val["calibration"]["target_coverage"] == 0.5
    assert val["coverage_at_threshold"] >= 0.5  # the threshold was chosen on this very split
    assert {"eval_test", "eval_val", "calibration"} <= set(artifacts(engine, "e"))
    assert (run_dir(engine, "e") / "eval-val.json").exists()
    refit = evaluation.evaluate_run("e", workspace=home, engine=engine, recalibrate=True)
    assert refit["calibration"]["target_coverage"] == 0.5  # a refit without a target keeps the stored one


def test_bad_split_and_unknown_run(home, engine, make_run):
    from snapid.errors import NotFound

    with pytest.raises(NotFound, match="'ghost'"):
        evaluation.evaluate_run("ghost", workspace=home, engine=engine)
    make_run("b")
    with pytest.raises(SnapidError, match="'holdout'"):
        evaluation.evaluate_run("b", workspace=home, engine=engine, split="holdout")


def test_many_classes_keep_the_json_bounded():
    rng = np.random.default_rng(0)
    c, n = 1000, 3000
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), labels] += 2.5
    classes = [{"id": f"c{i}", "name": f"class {i}"} for i in range(c)]
    result, _ = evaluation.score_split(logits, labels, classes=classes, train_counts=rng.integers(1, 400, c))
    assert result["confusion"]["format"] == "top_pairs" and "counts" not in result["confusion"]
    assert len(result["confusion"]["pairs"]) == evaluation.MAX_PAIRS
    assert len(result["coverage"]) <= 101 and len(result["reliability"]) == 15
    size = len(json.dumps(evaluation.clean_json(result)))
    assert size < 400_000, size  # a dense 1000 x 1000 matrix alone would be several MB
    assert result["top1"] == pytest.approx(metrics.topk_accuracy(logits, labels, 1))
    assert len(result["long_tail"]) >= 3


def test_clean_json_turns_nan_into_null():
    cleaned = evaluation.clean_json({"a": float("nan"), "b": [np.float32(1.5), float("inf")]})
    assert cleaned == {"a": None, "b": [1.5, None]}


def test_cli_eval_json_table_and_report(evaluated, home, tmp_path):
    from typer.testing import CliRunner

    from snapid.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["eval", "e", "--json"])
    assert out.exit_code == 0, out.output
    printed = strict_json(out.stdout)
    assert printed["run"] == "e" and printed["top1"] == pytest.approx(evaluated["top1"])
    target = tmp_path / "out" / "e.json"
    out = runner.invoke(app, ["eval", "e", "--target-accuracy", "0.9", "--out", str(target)])
    assert out.exit_code == 0, out.output
    assert "macro_top1" in out.output and "rejection threshold" in out.output
    assert strict_json(target.read_text())["calibration"]["target_accuracy"] == 0.9
    html = tmp_path / "e.html"
    out = runner.invoke(app, ["eval", "e", "--html", str(html)])
    assert out.exit_code == 0, out.output
    assert html.exists() and "<html" in html.read_text().lower()


def test_cli_errors_are_one_line_naming_the_value(home):
    env = {**os.environ, "SNAPID_HOME": str(home.home), "COLUMNS": "200"}
    env.pop("SNAPID_DB_URL", None)
    done = subprocess.run([sys.executable, "-m", "snapid", "eval", "ghost"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1
    assert "ghost" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "snapid", "eval", "ghost", "--target-accuracy", "0.9",
                           "--target-coverage", "0.5"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_ensemble_is_evaluated_like_a_run(make_run, home, engine):
    ensemble = pytest.importorskip("snapid.evaluate.ensemble")
    make_run("m1")
    make_run("m2", seed=1)
    ensemble.create_ensemble(["m1", "m2"], name="duo", workspace=home, engine=engine)
    result = evaluation.evaluate_run("duo", workspace=home, engine=engine)
    members = [evaluation.evaluate_run(m, workspace=home, engine=engine) for m in ("m1", "m2")]
    assert result["parameters"] == sum(m["parameters"] for m in members)
    assert result["n"] == members[0]["n"]
    assert "eval_test" in artifacts(engine, "duo") and "calibration" in artifacts(engine, "duo")
    logits, _, _ = calibrate.logits_for("duo", "test", workspace=home, engine=engine)
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-5)  # log of averaged probabilities
