"""Stratified, grouped splits and balanced subsampling."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from snapid.data.split import assign_splits, balanced_subsample, stratified_group_split


def test_no_given_split_makes_80_10_10_per_class():
    strata = ["a"] * 100 + ["b"] * 50
    splits, notes = assign_splits([None] * 150, strata, [None] * 150, seed=1)
    for label, n in (("a", 100), ("b", 50)):
        counts = Counter(s for s, stratum in zip(splits, strata, strict=True) if stratum == label)
        assert (counts["train"] == round(0.8 * n) and counts["val"] == round(0.1 * n)
                and counts["test"] == round(0.1 * n))
    assert "80/10/10" in notes[0]


def test_same_seed_same_split_and_other_seed_differs():
    strata = ["a", "b", "c"] * 40
    first, _ = assign_splits([None] * 120, strata, [None] * 120, seed=3)
    again, _ = assign_splits([None] * 120, strata, [None] * 120, seed=3)
    other, _ = assign_splits([None] * 120, strata, [None] * 120, seed=4)
    assert first == again and first != other


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 15)), min_size=1, max_size=200), st.integers(0, 5))
def test_groups_never_straddle_splits(rows, seed):
    strata = [r[0] for r in rows]
    groups = [f"obs{r[1]}" for r in rows]
    out = stratified_group_split(list(range(len(rows))), strata, groups, {"train": 0.8, "val": 0.1, "test": 0.1}, seed)
    by_group: dict[str, set] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, set()).add(out[i])
    assert all(len(s) == 1 for s in by_group.values())
    assert set(out) == set(range(len(rows)))


def test_given_splits_are_kept_and_val_is_carved_from_train():
    given = ["train"] * 90 + ["test"] * 10
    strata = (["a", "b"] * 50)
    splits, notes = assign_splits(given, strata, [None] * 100, seed=0)
    assert splits[90:] == ["test"] * 10
    for label in "ab":  # 45 train images each: 10% is 4.5, so 4 or 5 go to val
        counts = Counter(s for s, stratum in zip(splits[:90], strata[:90], strict=True) if stratum == label)
        assert counts["val"] in (4, 5)
    assert "val" in notes[0]


def test_all_three_given_are_untouched():
    given = ["train", "val", "test"] * 5
    splits, notes = assign_splits(given, ["a"] * 15, [None] * 15, seed=0)
    assert splits == given and notes == []


def test_balanced_subsample_caps_each_class():
    strata = ["a"] * 500 + ["b"] * 30
    kept = balanced_subsample(strata, [None] * 530, 200, seed=0)
    counts = Counter(strata[i] for i in kept)
    assert counts == {"a": 200, "b": 30}
    assert balanced_subsample(strata, [None] * 530, 200, seed=0) == kept


def test_balanced_subsample_keeps_groups_whole():
    strata = ["a"] * 30
    groups = [f"g{i // 3}" for i in range(30)]
    kept = balanced_subsample(strata, groups, 10, seed=2)
    assert len(kept) == 9
    assert all(sum(1 for i in kept if groups[i] == groups[k]) == 3 for k in kept)
