"""Paired bootstrap on constructed arrays, and the leaderboard over real tiny runs."""

from __future__ import annotations

import numpy as np
import pytest

from snapid.evaluate.leaderboard import ComparisonError, board_table, leaderboard, paired_bootstrap, verdict


def _correct(n: int, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, round(n * accuracy), replace=False)] = True
    return out


def test_identical_predictions_give_a_ci_around_zero():
    a = _correct(500, 0.9, seed=1)
    result = paired_bootstrap(a, a.copy())
    assert result["diff"] == 0 and result["low"] <= 0 <= result["high"]
    assert result["p_value"] == 1.0
    assert verdict(result) == "not significant"


def test_a_clearly_better_run_has_a_ci_above_zero():
    a, b = _correct(400, 0.92, seed=2), _correct(400, 0.55, seed=3)
    result = paired_bootstrap(a, b)
    assert result["diff"] == pytest.approx(0.37)
    assert 0 < result["low"] < result["diff"] < result["high"]
    assert result["p_value"] < 0.01
    assert verdict(result) == "significantly better"
    assert verdict(paired_bootstrap(b, a)) == "significantly worse"


def test_a_gap_of_two_items_in_five_hundred_is_not_significant():
    """The issue's example: 98.5 % against 98.9 % is two images out of five hundred."""
    b = np.ones(500, dtype=bool)
    b[:7] = False                        # 98.6 %
    a = b.copy()
    a[[0, 1]] = True                     # 99.0 %: two more right, on the same items
    result = paired_bootstrap(a, b, rounds=4000)
    assert result["diff"] == pytest.approx(0.004)
    assert result["low"] <= 0 <= result["high"]
    assert verdict(result) == "not significant"


def test_the_multinomial_shortcut_matches_resampling_items():
    """The O(rounds) draw must give the same interval as resampling item indices."""
    a, b = _correct(300, 0.8, seed=4), _correct(300, 0.7, seed=5)
    fast = paired_bootstrap(a, b, rounds=20000, seed=7)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 300, size=(20000, 300))
    slow = (a[idx].mean(axis=1) - b[idx].mean(axis=1))
    assert fast["low"] == pytest.approx(np.quantile(slow, 0.025), abs=0.006)
    assert fast["high"] == pytest.approx(np.quantile(slow, 0.975), abs=0.006)


def test_seeded_and_deterministic():
    a, b = _correct(200, 0.8, seed=6), _correct(200, 0.75, seed=8)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)


@pytest.mark.parametrize("a, b, message", [
    (np.ones(10, bool), np.ones(11, bool), "different items"),
    (np.array([0.2, 1.0]), np.array([1, 0]), "only 0/1"),
    (np.array([], bool), np.array([], bool), "no items"),
])
def test_refuses_what_cannot_be_paired(a, b, message):
    with pytest.raises(ComparisonError, match=message):
        paired_bootstrap(a, b)


def test_refuses_absurd_round_counts():
    with pytest.raises(ComparisonError, match="rounds"):
        paired_bootstrap(np.ones(5, bool), np.ones(5, bool), rounds=10**9)


def test_leaderboard_ranks_evaluated_runs_and_lists_the_others(make_run, home, engine):
    from snapid.evaluate.evaluation import evaluate_run

    make_run("good", probe_epochs=8)
    make_run("weak", probe_epochs=1)
    make_run("pending", probe_epochs=1, seed=2)
    evaluate_run("good", workspace=home, engine=engine)
    evaluate_run("weak", workspace=home, engine=engine)

    board = leaderboard("shapes", engine=engine)
    assert board["version"] == 1 and board["split"] == "test"
    names = [r["name"] for r in board["rows"]]
    assert set(names[:2]) == {"good", "weak"} and names[2] == "pending"
    best, second, pending = board["rows"]
    assert best["rank"] == 1 and second["rank"] == 2 and best["top1"] >= second["top1"]
    assert board["best"] == best["name"]
    assert second["vs_best"]["verdict"] in ("not significant", "significantly worse")
    assert second["vs_best"]["low"] <= second["vs_best"]["diff"] <= second["vs_best"]["high"]
    assert pending["rank"] is None and pending["note"] == "not evaluated — run `snapid eval pending`"
    for row in board["rows"][:2]:
        assert row["parameters"] > 0 and row["latency_ms"] > 0 and row["model"] == "custom_cnn"

    table = board_table(board)
    assert table[0][-1] == "best" and "not evaluated" in table[2][-1]
    rows = leaderboard("shapes", engine=engine, names=["weak", "pending"])["rows"]
    assert [r["name"] for r in rows] == ["weak", "pending"]
    assert leaderboard("shapes", engine=engine, split="val")["best"] is None   # nothing evaluated on val


def test_leaderboard_says_when_predictions_are_missing(make_run, home, engine):
    from pathlib import Path

    from snapid.evaluate.evaluation import evaluate_run

    make_run("one", probe_epochs=2)
    make_run("two", probe_epochs=2, seed=3)
    for name in ("one", "two"):
        evaluate_run(name, workspace=home, engine=engine)
    board = leaderboard("shapes", engine=engine)
    loser = board["rows"][1]
    Path(loser["preds"]).unlink()
    again = leaderboard("shapes", engine=engine)["rows"][1]
    assert again["vs_best"] is None and "is missing" in again["note"]


def test_leaderboard_of_an_unknown_dataset_is_a_clear_error(engine):
    from snapid.errors import NotFound

    with pytest.raises(NotFound, match="no dataset named 'nope'"):
        leaderboard("nope", engine=engine)
