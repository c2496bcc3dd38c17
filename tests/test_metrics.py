"""Metrics against hand-computed small cases and against scikit-learn where the definitions coincide."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from snapid import metrics

# 5 samples, 3 classes; argmax = [0, 1, 1, 2, 0], labels = [0, 0, 1, 2, 2]
SCORES = np.array([[0.7, 0.2, 0.1],
                   [0.3, 0.6, 0.1],
                   [0.1, 0.8, 0.1],
                   [0.2, 0.1, 0.7],
                   [0.5, 0.1, 0.4]])
LABELS = np.array([0, 0, 1, 2, 2])


def random_case(seed: int, n: int = 200, c: int = 7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[labels] * rng.random((n, 1))
    return logits, labels


def test_hand_computed_topk_and_macro_topk():
    assert metrics.topk_accuracy(SCORES, LABELS, 1) == pytest.approx(3 / 5)
    # top-2: sample 1 has 0 second (0.3), sample 4 has 2 second (0.4): all five hit
    assert metrics.topk_accuracy(SCORES, LABELS, 2) == pytest.approx(1.0)
    # per class top-1: class 0: 1/2, class 1: 1/1, class 2: 1/2
    np.testing.assert_allclose(metrics.per_class_topk(SCORES, LABELS, 1), [0.5, 1.0, 0.5])
    assert metrics.macro_topk(SCORES, LABELS, 1) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert metrics.macro_topk(SCORES, LABELS, 5) == 1.0  # k above the class count means all


def test_macro_topk_weighs_rare_classes_equally():
    # 9 samples of a class always right, 1 sample of a rare class wrong: micro 0.9, macro 0.5
    scores = np.tile([[0.9, 0.1]], (10, 1))
    labels = np.array([0] * 9 + [1])
    assert metrics.topk_accuracy(scores, labels, 1) == pytest.approx(0.9)
    assert metrics.macro_topk(scores, labels, 1) == pytest.approx(0.5)


def test_macro_topk_ignores_classes_without_samples():
    scores = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    assert np.isnan(metrics.per_class_topk(scores, np.array([0, 1]), 1)[2])
    assert metrics.macro_topk(scores, np.array([0, 1]), 1) == 1.0


def test_hand_computed_balanced_accuracy_and_confusion():
    pred = SCORES.argmax(1)
    counts = metrics.confusion_matrix(pred, LABELS, 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_allclose(metrics.normalize_rows(counts), [[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]])
    assert metrics.balanced_accuracy(pred, LABELS, 3) == pytest.approx((0.5 + 1 + 0.5) / 3)
    precision, recall, f1, support = metrics.per_class_prf(counts)
    np.testing.assert_allclose(precision, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(recall, [0.5, 1.0, 0.5])
    np.testing.assert_allclose(f1, [0.5, 2 / 3, 2 / 3])
    np.testing.assert_array_equal(support, [2, 1, 2])


@pytest.mark.parametrize("seed", range(4))
def test_against_scikit_learn(seed):
    logits, labels = random_case(seed)
    c = logits.shape[1]
    pred = logits.argmax(1)
    classes = list(range(c))
    assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(sk.accuracy_score(labels, pred))
    expected = sk.top_k_accuracy_score(labels, logits, k=3, labels=classes)
    assert metrics.topk_accuracy(logits, labels, 3) == pytest.approx(expected)
    assert metrics.balanced_accuracy(pred, labels, c) == pytest.approx(sk.balanced_accuracy_score(labels, pred))
    # balanced accuracy is macro top-1
    assert metrics.macro_topk(logits, labels, 1) == pytest.approx(sk.balanced_accuracy_score(labels, pred))
    counts = metrics.confusion_matrix(pred, labels, c)
    np.testing.assert_array_equal(counts, sk.confusion_matrix(labels, pred, labels=classes))
    np.testing.assert_allclose(metrics.normalize_rows(counts),
                               sk.confusion_matrix(labels, pred, labels=classes, normalize="true"))
    p, r, f, s = metrics.per_class_prf(counts)
    ref = sk.precision_recall_fscore_support(labels, pred, labels=classes, zero_division=0)
    for ours, theirs in zip((p, r, f, s), ref, strict=True):
        np.testing.assert_allclose(ours, theirs)
    present = sorted(set(labels.tolist()))
    assert metrics.macro_f1(logits, labels) == pytest.approx(sk.f1_score(labels, pred, labels=present, average="macro"))
    probs = metrics.softmax(logits)
    assert metrics.nll(logits, labels) == pytest.approx(sk.log_loss(labels, probs, labels=classes))
    np.testing.assert_allclose(np.exp(metrics.log_softmax(logits, 2.0)), metrics.softmax(logits, 2.0))


def test_softmax_is_stable_for_huge_logits():
    probs = metrics.softmax(np.array([[1e4, 0.0, -1e4]]))
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1.0)
    assert np.isfinite(metrics.nll(np.array([[1e4, 0.0]]), np.array([1])))


def test_hand_computed_ece_and_reliability():
    # confidences 0.9, 0.9 (one right, one wrong) and 0.6, 0.6 (both right), 2 bins
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    bins = metrics.reliability_bins(probs, labels, n_bins=2)
    assert [b["count"] for b in bins] == [0, 4]
    bins = metrics.reliability_bins(probs, labels, n_bins=5)  # edges 0.2 apart: 0.6 in (0.4, 0.6], 0.9 in (0.8, 1]
    by_lo = {round(b["lo"], 1): b for b in bins}
    assert by_lo[0.4]["count"] == 2 and by_lo[0.4]["accuracy"] == 1.0 and by_lo[0.4]["confidence"] == pytest.approx(0.6)
    assert by_lo[0.8]["count"] == 2 and by_lo[0.8]["accuracy"] == 0.5 and by_lo[0.8]["confidence"] == pytest.approx(0.9)
    assert by_lo[0.0]["count"] == 0 and by_lo[0.0]["accuracy"] is None
    # ECE = 2/4 * |1 - 0.6| + 2/4 * |0.5 - 0.9| = 0.4
    assert metrics.expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.4)


def test_perfectly_calibrated_bins_give_zero_ece():
    probs = np.array([[1.0, 0.0]] * 3)
    assert metrics.expected_calibration_error(probs, np.zeros(3, dtype=int)) == 0.0


def test_long_tail_buckets_by_training_frequency():
    class_top1 = np.array([1.0, 0.5, 0.0, 0.25, np.nan])
    train_counts = np.array([3, 4, 7, 150, 120])
    buckets = metrics.long_tail_buckets(class_top1, train_counts)
    assert buckets == [
        {"bucket": "1-4", "classes": 2, "train_min": 3, "train_max": 4, "top1": 0.75},
        {"bucket": "5-9", "classes": 1, "train_min": 7, "train_max": 7, "top1": 0.0},
        {"bucket": "100-199", "classes": 2, "train_min": 120, "train_max": 150, "top1": 0.25},
    ]


def test_coverage_curve_hand_computed():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, False, True])
    curve = {round(p["threshold"], 2): p for p in metrics.coverage_curve(confidence, correct, points=5)}
    assert curve[0.0]["coverage"] == 1.0 and curve[0.0]["accuracy"] == 0.75
    assert curve[0.8]["coverage"] == 0.5 and curve[0.8]["accuracy"] == 1.0
    assert curve[0.9]["coverage"] == 0.25
    assert len(metrics.coverage_curve(np.random.default_rng(0).random(10_000), np.ones(10_000, bool))) <= 101


def test_choose_threshold_hand_computed():
    confidence = np.array([0.6, 0.9, 0.7, 0.8])
    correct = np.array([True, True, False, True])  # sorted by confidence: right, right, wrong, right
    assert metrics.choose_threshold(confidence, correct, target_accuracy=1.0) == 0.8
    assert metrics.choose_threshold(confidence, correct, target_accuracy=0.75) == 0.6   # all four: 3/4
    assert metrics.choose_threshold(confidence, correct, target_accuracy=0.8) == 0.8
    assert metrics.choose_threshold(confidence, correct, target_coverage=0.5) == 0.8
    assert metrics.choose_threshold(confidence, correct, target_coverage=0.51) == 0.7
    assert metrics.choose_threshold(confidence, correct, target_coverage=1.0) == 0.6
    # ties move together, and an unreachable target rejects everything below 1.0
    assert metrics.choose_threshold(np.array([0.9, 0.9, 0.5]), np.array([True, False, True]),
                                    target_accuracy=1.0) == 1.0
    with pytest.raises(ValueError):
        metrics.choose_threshold(confidence, correct)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9, 0.99]), st.booleans()), min_size=1, max_size=30),
       st.floats(0.05, 1.0))
def test_chosen_threshold_against_brute_force(pairs, target):
    """The threshold gives the most coverage among all cuts whose accepted answers meet the target."""
    confidence = np.array([p[0] for p in pairs])
    correct = np.array([p[1] for p in pairs])
    feasible = [(confidence >= u).mean() for u in np.unique(confidence)
                if correct[confidence >= u].mean() >= target - 1e-12]
    t = metrics.choose_threshold(confidence, correct, target_accuracy=target)
    if feasible:
        assert (confidence >= t).mean() == max(feasible)
        assert correct[confidence >= t].mean() >= target - 1e-12
    else:
        assert t == 1.0
    t = metrics.choose_threshold(confidence, correct, target_coverage=target)
    assert (confidence >= t).mean() >= target - 1e-9
    assert not (confidence > t).mean() >= target - 1e-9  # and it is the highest such threshold


def test_threshold_meets_target_on_held_out_data():
    """Calibrated synthetic scores: a threshold chosen on one half meets its target on the other."""
    rng = np.random.default_rng(0)
    for target in (0.8, 0.9, 0.95):
        confidence = rng.beta(4, 1.5, size=40_000)
        correct = rng.random(40_000) < confidence
        val, test = slice(0, 20_000), slice(20_000, None)
        t = metrics.choose_threshold(confidence[val], correct[val], target_accuracy=target, z=1.0)
        accepted = confidence[test] >= t
        assert correct[test][accepted].mean() >= target - 0.005
        assert accepted.mean() > 0.1
        t = metrics.choose_threshold(confidence[val], correct[val], target_coverage=target)
        assert abs((confidence[test] >= t).mean() - target) < 0.01


def test_wilson_bound_makes_the_threshold_conservative():
    assert metrics.wilson_lower(np.array([9.0]), np.array([10.0]), 0.0)[0] == pytest.approx(0.9)
    # scipy-free check against the closed form for p = 1: n / (n + z^2)
    assert metrics.wilson_lower(np.array([19.0]), np.array([19.0]), 1.0)[0] == pytest.approx(19 / 20)
    rng = np.random.default_rng(3)
    confidence = rng.random(500)
    correct = rng.random(500) < confidence
    plain = metrics.choose_threshold(confidence, correct, target_accuracy=0.9)
    careful = metrics.choose_threshold(confidence, correct, target_accuracy=0.9, z=1.0)
    assert careful > plain
    # three right answers are not evidence enough for 95 % at one standard error
    assert metrics.choose_threshold(np.array([0.9, 0.8, 0.7]), np.ones(3, bool), target_accuracy=0.95, z=1.0) == 1.0


def test_hardest_mistakes_by_loss():
    probs_true = np.array([0.9, 0.05, 0.3, 0.01, 0.2])
    correct = np.array([True, False, False, True, False])
    np.testing.assert_array_equal(metrics.hardest_mistakes(probs_true, correct), [1, 4, 2])
    np.testing.assert_array_equal(metrics.hardest_mistakes(probs_true, correct, limit=2), [1, 4])


def test_top_confused_pairs():
    counts = np.array([[5, 3, 0], [1, 4, 7], [0, 2, 9]])
    assert metrics.top_confused_pairs(counts, 2) == [(1, 2, 7), (0, 1, 3)]
    assert len(metrics.top_confused_pairs(counts, 100)) == 4


def test_empty_inputs_give_nan_not_errors():
    empty = np.zeros((0, 3))
    labels = np.zeros(0, dtype=int)
    assert np.isnan(metrics.macro_topk(empty, labels, 1))
    assert np.isnan(metrics.balanced_accuracy(labels, labels, 3))
    assert np.isnan(metrics.expected_calibration_error(empty, labels))
    assert metrics.coverage_curve(np.zeros(0), np.zeros(0, bool)) == []
