"""Stratified, grouped train/val/test splits, and balanced subsampling. Pure and deterministic."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def _units(indices: list[int], strata: list[str], groups: list[str | None]) -> dict[str, list[list[int]]]:
    """Group indices into units that must stay together, bucketed by the unit's majority stratum."""
    members: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        key = f"g:{groups[i]}" if groups[i] is not None else f"i:{i}"
        members[key].append(i)
    by_stratum: dict[str, list[list[int]]] = defaultdict(list)
    for key in sorted(members):
        unit = members[key]
        stratum = Counter(strata[i] for i in unit).most_common(1)[0][0]
        by_stratum[stratum].append(unit)
    return by_stratum


def stratified_group_split(
    indices: list[int], strata: list[str], groups: list[str | None], fractions: dict[str, float], seed: int
) -> dict[int, str]:
    """Assign each index a split so every stratum follows ``fractions`` and no group straddles splits."""
    rng = np.random.default_rng(seed)
    names = list(fractions)
    out: dict[int, str] = {}
    for _stratum, units in sorted(_units(indices, strata, groups).items()):
        order = rng.permutation(len(units))
        total = sum(len(u) for u in units)
        filled = dict.fromkeys(names, 0)
        for k in order:
            unit = units[k]
            # the split furthest below its target takes the unit (ties: the order of `fractions`)
            pick = max(names, key=lambda s: (fractions[s] * total - filled[s], -names.index(s)))
            filled[pick] += len(unit)
            for i in unit:
                out[i] = pick
    return out


def assign_splits(
    given: list[str | None], strata: list[str], groups: list[str | None], *, seed: int, val_fraction: float = 0.1
) -> tuple[list[str], list[str]]:
    """Keep given splits; fill what is missing. Returns (split per sample, notes for the user)."""
    notes: list[str] = []
    splits = list(given)
    unassigned = [i for i, s in enumerate(given) if s is None]
    present = {s for s in given if s is not None}
    if unassigned:
        for i, s in stratified_group_split(unassigned, strata, groups, DEFAULT_FRACTIONS, seed).items():
            splits[i] = s
        what = "all samples" if not present else f"{len(unassigned)} samples with no split"
        notes.append(f"split {what} 80/10/10 train/val/test, stratified by label"
                     + (" and grouped" if any(g is not None for g in groups) else "") + f" (seed {seed})")
    elif "val" not in present and "train" in present:
        train = [i for i, s in enumerate(splits) if s == "train"]
        carve = {"train": 1.0 - val_fraction, "val": val_fraction}
        for i, s in stratified_group_split(train, strata, groups, carve, seed).items():
            splits[i] = s
        notes.append(f"no val split given: took {val_fraction:.0%} of train as val, stratified (seed {seed})")
    return [s or "train" for s in splits], notes


def balanced_subsample(strata: list[str], groups: list[str | None], limit: int, seed: int) -> list[int]:
    """Indices keeping at most ``limit`` samples per stratum, whole groups at a time, chosen at random."""
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for _stratum, units in sorted(_units(list(range(len(strata))), strata, groups).items()):
        taken = 0
        for k in rng.permutation(len(units)):
            unit = units[k]
            if taken and taken + len(unit) > limit:
                continue
            kept.extend(unit)
            taken += len(unit)
            if taken >= limit:
                break
    return sorted(kept)
