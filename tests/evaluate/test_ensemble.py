"""Ensembles of two tiny runs: created, calibrated, evaluated, listed; and what must be refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snapid.evaluate.ensemble import (
    EnsembleError,
    create_ensemble,
    ensemble_logits,
    equal_weights,
    fit_mixture_weights,
    load_ensemble,
    mixture_log_probs,
)
from snapid.track import runs as track
from snapid.track.db import transaction


def _artifacts(engine, name: str) -> dict:
    with transaction(engine) as s:
        return {a["kind"]: a for a in track.artifacts(s, name=name)}


def test_an_ensemble_of_two_runs_is_created_evaluated_and_listed(make_run, home, engine):
    from snapid.evaluate.leaderboard import leaderboard

    make_run("a", probe_epochs=8)
    make_run("b", probe_epochs=8, seed=1)
    result = create_ensemble(["a", "b"], name="ab", workspace=home, engine=engine)

    assert result["weights"] == [0.5, 0.5] and result["method"] == "soft"
    assert 0 <= result["top1"] <= 1 and result["n"] > 0
    with transaction(engine) as s:
        run = track.get_run(s, name="ab")
    assert (run["kind"], run["model"], run["status"]) == ("ensemble", "ensemble", "completed")
    assert (run["dataset"], run["dataset_version"]) == ("shapes", 1)
    assert run["config"] == {"members": ["a", "b"], "method": "soft", "weights": [0.5, 0.5],
                             "temperatures": result["temperatures"]}
    assert Path(run["run_dir"]) == home.runs / "ab"
    for name in ("a", "b", "ab"):    # members calibrated on the way, the ensemble too
        assert "calibration" in _artifacts(engine, name)
    evaluation = json.loads((home.runs / "ab" / "eval-test.json").read_text())
    assert evaluation["run"] == "ab" and evaluation["n"] == result["n"]
    assert "eval_test" in _artifacts(engine, "ab")
    assert (home.runs / "ab" / "eval-test-preds.npz").exists()

    rows = {r["name"]: r for r in leaderboard("shapes", engine=engine)["rows"]}
    assert rows["ab"]["kind"] == "ensemble" and rows["ab"]["evaluated"] and rows["ab"]["rank"] is not None
    assert rows["ab"]["parameters"] > 0

    # exportable like a single run (tests/export checks the graph's parity in depth)
    from snapid.export.bundle import load_bundle
    from snapid.export.from_run import export_run

    bundle = load_bundle(export_run("ab", workspace=home, engine=engine).path)
    assert bundle.manifest["kind"] == "ensemble"
    assert bundle.calibration["temperature"] == pytest.approx(result["temperature"])


def test_ensemble_logits_are_the_log_of_the_averaged_calibrated_probabilities(make_run, home, engine):
    from snapid.evaluate.calibrate import stored_calibration
    from snapid.evaluate.loaded import load_trained, predict_logits, split_dataset
    from snapid.metrics import softmax

    make_run("a", probe_epochs=4)
    make_run("b", probe_epochs=4, seed=1)
    create_ensemble(["a", "b"], name="ab", method="weighted", workspace=home, engine=engine)

    ens = load_ensemble("ab", engine=engine)
    assert [m.name for m in ens.members] == ["a", "b"] and sum(ens.weights) == pytest.approx(1)
    log_probs, labels, dataset = ensemble_logits("ab", "test", workspace=home, engine=engine)
    assert log_probs.shape == (len(dataset), 3) and len(labels) == len(dataset)

    expected = 0
    for name, weight in zip(["a", "b"], ens.weights, strict=True):
        trained = load_trained(name, engine=engine)
        logits, member_labels = predict_logits(trained.model,
                                               split_dataset(trained, "test", workspace=home, engine=engine),
                                               trained.preprocess)
        np.testing.assert_array_equal(member_labels, labels)
        expected = expected + weight * softmax(logits, stored_calibration(name, engine=engine)["temperature"])
    np.testing.assert_allclose(np.exp(log_probs), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(softmax(log_probs), expected, rtol=1e-4, atol=1e-6)   # logits that serve as-is


def test_mixture_weights_favour_the_member_that_explains_validation():
    labels = np.array([0, 1, 2, 0, 1, 2] * 20)
    sure = np.eye(3)[labels] * 0.9 + 0.1 / 3        # right and confident
    unsure = np.full((len(labels), 3), 1 / 3)       # no information
    weights = fit_mixture_weights(np.stack([sure, unsure]), labels)
    assert weights[0] > 0.9 and sum(weights) == pytest.approx(1)
    assert fit_mixture_weights(np.stack([sure, sure]), labels) == pytest.approx([0.5, 0.5])


def test_a_tiny_validation_split_cannot_hand_all_the_weight_to_one_member():
    labels = np.array([0, 1])
    good, bad = np.eye(3)[labels], np.full((2, 3), 1 / 3)
    weights = fit_mixture_weights(np.stack([good, bad]), labels)
    assert 0.5 < weights[0] < 0.8


def test_weighted_needs_a_validation_split():
    with pytest.raises(EnsembleError, match="validation split"):
        fit_mixture_weights(np.zeros((2, 0, 3)), np.zeros(0, dtype=np.int64))


def test_mixture_log_probs_stay_finite_and_normalised():
    probs = np.stack([np.array([[1.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 0.0]])])
    out = mixture_log_probs(probs, equal_weights(2))
    assert np.isfinite(out).all() and np.exp(out).sum() == pytest.approx(1, abs=1e-6)


def test_refusals_name_the_run_at_fault(make_run, home, engine, tmp_path):
    from snapid.importer import import_dataset
    from snapid.train.config import TrainConfig
    from snapid.train.fit import train
    from tests.helpers import TINY_TRAIN, shapes_dataset

    make_run("a", probe_epochs=1)
    make_run("b", probe_epochs=1, seed=1)
    create_ensemble(["a", "b"], name="ab", workspace=home, engine=engine)

    def refused(members, match, **kw):
        with pytest.raises(EnsembleError, match=match):
            create_ensemble(members, **{"name": "x", "workspace": home, "engine": engine, **kw})

    refused(["ab", "a"], "'ab' is itself an ensemble")
    refused(["a"], "2 to 16 member runs")
    refused(["a", "a"], "listed twice")
    refused(["a", "b"], "unknown ensemble method 'hard'", method="hard")
    refused(["a", "b"], "ensemble name '../x'", name="../x")
    refused(["a", "b"], "also one of its members", name="a")

    with transaction(engine) as s:
        track.finish_run(s, name="b", status="failed", error="boom")
    refused(["a", "b"], "run 'b' is failed")

    import_dataset(shapes_dataset(tmp_path / "other", per_class=6), name="other", engine=engine)
    train("other", TrainConfig(**{**TINY_TRAIN, "probe_epochs": 1}), workspace=home, engine=engine, name="c")
    refused(["a", "c"], "different dataset versions")

    from snapid.errors import SnapidError

    with pytest.raises(SnapidError, match="already exists"):
        with transaction(engine) as s:
            track.finish_run(s, name="b", status="completed")
        create_ensemble(["a", "b"], name="ab", workspace=home, engine=engine)


def test_loading_a_single_run_as_an_ensemble_is_refused(make_run, engine):
    make_run("a", probe_epochs=1)
    with pytest.raises(EnsembleError, match="not an ensemble"):
        load_ensemble("a", engine=engine)


def test_recalibrating_a_member_later_does_not_change_the_ensemble(make_run, engine, home):
    from snapid.evaluate.calibrate import stored_calibration
    from snapid.evaluate.ensemble import create_ensemble, load_ensemble
    from snapid.track import runs as track
    from snapid.track.db import transaction

    make_run("a")
    make_run("b", seed=1)
    made = create_ensemble(["a", "b"], name="pair", workspace=home, engine=engine)
    with transaction(engine) as s:  # the member gets another temperature afterwards
        track.record_artifact(s, name="a", kind="calibration", path="", meta={"temperature": 9.0, "threshold": 0.0})
    assert stored_calibration("a", engine=engine)["temperature"] == 9.0
    assert load_ensemble("pair", engine=engine).temperatures == made["temperatures"] != [9.0, made["temperatures"][1]]
