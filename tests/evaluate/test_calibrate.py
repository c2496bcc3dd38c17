"""Temperature scaling and the rejection threshold: fitted on validation data, stored with the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snapid import metrics
from snapid.errors import SnapidError
from snapid.evaluate import calibrate


def sampled(n: int, c: int = 10, seed: int = 0, scale: float = 1.0):
    """Logits whose softmax is the true label distribution, then multiplied by ``scale``
    (scale > 1: an over-confident model; the right temperature is then ``scale``)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, c))
    p = metrics.softmax(z)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z * scale, labels


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0, 8.0])
def test_fit_temperature_recovers_the_scale(scale):
    logits, labels = sampled(20_000, scale=scale)
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(scale, rel=0.06)


def test_calibration_lowers_ece_of_an_overconfident_model_on_held_out_data():
    logits, labels = sampled(8_000, scale=5.0, seed=1)
    val, test = slice(0, 4_000), slice(4_000, None)
    t = calibrate.fit_temperature(logits[val], labels[val])
    before = metrics.expected_calibration_error(metrics.softmax(logits[test]), labels[test])
    after = metrics.expected_calibration_error(metrics.softmax(logits[test], t), labels[test])
    assert before > 0.2 and after < 0.03
    assert metrics.topk_accuracy(metrics.softmax(logits[test], t), labels[test]) == \
        metrics.topk_accuracy(logits[test], labels[test])  # scaling never changes the ranking


def test_separable_and_hopeless_cases_stay_bounded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    separable = np.eye(5)[labels] * 50.0  # every answer right with a huge margin: no evidence to sharpen
    assert calibrate.fit_temperature(separable, labels) == 1.0
    wrong = np.eye(5)[(labels + 1) % 5] * 1e4  # every answer wrong, extremely confident: as flat as allowed
    t = calibrate.fit_temperature(wrong, labels)
    assert t == pytest.approx(calibrate.T_BOUNDS[1], rel=1e-3)
    mostly_right = separable.copy()
    mostly_right[:3] = wrong[:3]  # a few confident mistakes: soften, within the bounds
    t = calibrate.fit_temperature(mostly_right, labels)
    assert 1.0 < t <= calibrate.T_BOUNDS[1]
    assert calibrate.fit_temperature(np.zeros((0, 5)), np.zeros(0, dtype=int)) == 1.0


def test_temperature_and_threshold_meet_the_target_on_held_out_data():
    logits, labels = sampled(20_000, scale=4.0, seed=2)
    val, test = slice(0, 10_000), slice(10_000, None)
    for target in (0.8, 0.9):
        found = calibrate.calibration_from_logits(logits[val], labels[val], target_accuracy=target)
        probs = metrics.softmax(logits[test], found["temperature"])
        accepted = probs.max(axis=1) >= found["threshold"]
        accuracy = (probs.argmax(axis=1) == labels[test])[accepted].mean()
        assert accuracy >= target - 0.005 and accepted.mean() > 0.05
        assert found["val_ece_after"] < found["val_ece_before"]
    found = calibrate.calibration_from_logits(logits[val], labels[val], target_coverage=0.6)
    probs = metrics.softmax(logits[test], found["temperature"])
    assert abs((probs.max(axis=1) >= found["threshold"]).mean() - 0.6) < 0.02


def test_targets_are_checked():
    logits, labels = sampled(50)
    with pytest.raises(SnapidError, match="not both"):
        calibrate.calibration_from_logits(logits, labels, target_accuracy=0.9, target_coverage=0.5)
    with pytest.raises(SnapidError, match="--target-accuracy 1.5"):
        calibrate.calibration_from_logits(logits, labels, target_accuracy=1.5)
    assert calibrate.calibration_from_logits(logits, labels)["target_accuracy"] == calibrate.DEFAULT_TARGET_ACCURACY


def overconfident(run_dir: Path, factor: float) -> None:
    """Rewrite a run's best checkpoint with its linear head multiplied by ``factor``: the logits are
    multiplied by it, so the model is the same classifier made deliberately over-confident."""
    from snapid.train.checkpoint import load_checkpoint, save_checkpoint

    weights, meta, _ = load_checkpoint(run_dir, "best")
    head = [k for k in weights if k.startswith("head.")]
    assert head, sorted(weights)
    scaled = {k: v * factor if k in head else v for k, v in weights.items()}
    save_checkpoint(run_dir, "best", weights=scaled, meta=meta)


def test_calibrate_run_stores_and_reads_back(make_run, home, engine):
    from snapid.track import runs as track
    from snapid.track.db import transaction

    make_run("cal")
    assert calibrate.stored_calibration("cal", engine=engine) == calibrate.DEFAULTS
    assert not calibrate.has_calibration("cal", engine=engine)
    result = calibrate.calibrate_run("cal", workspace=home, engine=engine, target_coverage=0.5)
    assert calibrate.T_BOUNDS[0] <= result["temperature"] <= calibrate.T_BOUNDS[1]
    assert result["val_coverage"] >= 0.5 and result["target_accuracy"] is None
    stored = calibrate.stored_calibration("cal", engine=engine)
    assert {k: stored[k] for k in calibrate.DEFAULTS} == {k: result[k] for k in calibrate.DEFAULTS}
    with transaction(engine) as s:
        row = [a for a in track.artifacts(s, name="cal") if a["kind"] == "calibration"]
        run_dir = Path(track.get_run(s, name="cal")["run_dir"])
    assert len(row) == 1 and Path(row[0]["path"]) == run_dir / "calibration.json"
    assert json.loads((run_dir / "calibration.json").read_text())["temperature"] == result["temperature"]
    calibrate.calibrate_run("cal", workspace=home, engine=engine)  # again: replaces, never duplicates
    with transaction(engine) as s:
        assert [a["kind"] for a in track.artifacts(s, name="cal")].count("calibration") == 1
    assert calibrate.stored_calibration("cal", engine=engine)["target_accuracy"] == 0.95


def test_calibrate_run_softens_a_deliberately_overconfident_run(make_run, home, engine):
    from snapid.track import runs as track
    from snapid.track.db import transaction

    make_run("hot")
    with transaction(engine) as s:
        run_dir = Path(track.get_run(s, name="hot")["run_dir"])
    plain = calibrate.calibrate_run("hot", workspace=home, engine=engine)
    overconfident(run_dir, 20.0)
    hot = calibrate.calibrate_run("hot", workspace=home, engine=engine)
    assert hot["val_ece_before"] > plain["val_ece_before"]       # the scaling did make it over-confident
    assert hot["val_ece_after"] < hot["val_ece_before"] - 0.05
    assert hot["temperature"] > 5 * plain["temperature"]          # the temperature undoes most of it
    logits, labels, _ = calibrate.logits_for("hot", "test", workspace=home, engine=engine)
    before = metrics.expected_calibration_error(metrics.softmax(logits), labels)
    after = metrics.expected_calibration_error(metrics.softmax(logits, hot["temperature"]), labels)
    assert after < before


def test_calibrate_unknown_run_names_it(home, engine):
    from snapid.errors import NotFound

    with pytest.raises(NotFound, match="'nope'"):
        calibrate.calibrate_run("nope", workspace=home, engine=engine)
