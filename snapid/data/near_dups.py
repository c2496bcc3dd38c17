"""Near duplicates among 64-bit perceptual hashes, without comparing every pair.

Multi-index hashing: cut the 64 bits into ``distance + 1`` bands. Two hashes within Hamming
distance ``distance`` differ in at most ``distance`` bands, so (pigeonhole) at least one band
is equal. Hashes are bucketed by each band in turn and only bucket mates are compared, with
numpy doing the XOR and popcount. Identical hashes are collapsed to one node first, so a
dataset full of blank frames does not make one enormous bucket; pairs inside a node are
counted arithmetically. Pure: indices in, counts and index pairs out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_BUCKET = 2000                 # unique hashes compared per bucket; larger buckets are truncated
MAX_COMPARISONS = 200_000_000     # overall budget of hash comparisons (~5 s); 300k random hashes need ~40M
_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def parse_hashes(hexes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """uint64 values and a validity mask; a missing or malformed hash is marked invalid."""
    n = len(hexes)
    if n and all(isinstance(h, str) and len(h) == 16 for h in hexes):
        try:  # fast path: one bytes.fromhex over the whole column
            values = np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(np.uint64)
            return values, np.ones(n, dtype=bool)
        except ValueError:
            pass
    values, ok = np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=bool)
    for i, h in enumerate(hexes):
        try:
            v = int(h, 16)
        except (TypeError, ValueError):
            continue
        if 0 <= v < 1 << 64:
            values[i], ok[i] = v, True
    return values, ok


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (np.bitwise_count on numpy ≥ 2, a byte lookup table before)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _BYTE_POPCOUNT[x.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.int64)


def band_layout(distance: int) -> list[tuple[int, int]]:
    """(shift, width) of each of the distance + 1 bands covering the 64 bits."""
    count = max(1, min(distance + 1, 64))
    base, extra = divmod(64, count)
    widths = [base + (1 if i < extra else 0) for i in range(count)]
    shifts = [sum(widths[:i]) for i in range(count)]
    return list(zip(shifts, widths, strict=True))


def near_pairs(values: np.ndarray, distance: int, *, max_bucket: int = MAX_BUCKET,
               max_comparisons: int = MAX_COMPARISONS) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Pairs (i < j) of DISTINCT values within ``distance`` bits, their distances, and search stats."""
    values = np.asarray(values, dtype=np.uint64)
    stats = {"comparisons": 0, "capped_buckets": 0, "skipped_comparisons": 0, "budget_exhausted": False}
    found: list[np.ndarray] = []
    for shift, width in band_layout(distance) if distance >= 0 else []:
        mask = np.uint64((1 << width) - 1)
        keys = (values >> np.uint64(shift)) & mask
        keys_found = _band_pairs(values, keys, distance, max_bucket, max_comparisons, stats)
        found.append(keys_found)
        if stats["budget_exhausted"]:
            break
    n = np.int64(len(values))
    keys = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    a, b = keys // max(n, 1), keys % max(n, 1)
    return a, b, popcount(values[a] ^ values[b]), stats


def _band_pairs(values: np.ndarray, keys: np.ndarray, distance: int, max_bucket: int,
                max_comparisons: int, stats: dict) -> np.ndarray:
    """Close pairs among bucket mates of one band, encoded as i * n + j with i < j."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    sizes = np.diff(np.r_[starts, len(sk)])
    big = sizes > max_bucket
    if big.any():  # truncate oversized buckets and say so: the report must not claim completeness
        stats["capped_buckets"] += int(big.sum())
        stats["skipped_comparisons"] += int((sizes[big] * (sizes[big] - 1) // 2).sum()
                                            - big.sum() * (max_bucket * (max_bucket - 1) // 2))
    rank = np.arange(len(sk)) - np.repeat(starts, sizes)      # position inside its bucket
    gsize = np.repeat(np.minimum(sizes, max_bucket), sizes)
    keep = (gsize > 1) & (rank < max_bucket)
    idx, sk, gsize = order[keep], sk[keep], gsize[keep]
    n, out, k = np.int64(len(values)), [], 1
    # Buckets are contiguous runs of equal keys: comparing each element with the one k places
    # further on, for k = 1, 2, ..., enumerates every pair inside every bucket exactly once.
    while len(idx) > k:
        live = gsize > k              # drop whole buckets that have no pair at offset k
        idx, sk, gsize = idx[live], sk[live], gsize[live]
        if len(idx) <= k:
            break
        same = sk[:-k] == sk[k:]
        a, b = idx[:-k][same], idx[k:][same]
        stats["comparisons"] += len(a)
        close = popcount(values[a] ^ values[b]) <= distance
        lo, hi = np.minimum(a[close], b[close]), np.maximum(a[close], b[close])
        out.append(lo.astype(np.int64) * n + hi)
        if stats["comparisons"] > max_comparisons:
            stats["budget_exhausted"] = True
            break
        k += 1
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def find_near_duplicates(hexes: Sequence[str], splits: Sequence[str], shas: Sequence[str], distance: int, *,
                         max_examples: int = 50, max_bucket: int = MAX_BUCKET) -> dict:
    """Counts of near-duplicate sample pairs (not exact duplicates) within and across splits,
    with example index pairs."""
    values, ok = parse_hashes(hexes)
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        return _result(distance, len(values), rows, 0, 0, 0, [], [], {})
    uniq, inv = np.unique(values[rows], return_inverse=True)
    split_names, split_code = np.unique(np.asarray(splits, dtype=object)[rows].astype(str), return_inverse=True)
    _, sha_code = np.unique(np.asarray(shas, dtype=object)[rows].astype(str), return_inverse=True)
    n_split = max(len(split_names), 1)
    per_node = _bincount2(inv, split_code, len(uniq), n_split)     # samples per (hash, split)
    a, b, dist, stats = near_pairs(uniq, distance, max_bucket=max_bucket)
    # Distinct hashes cannot share a sha256, so every member pair counts.
    within_ab = (per_node[a] * per_node[b]).sum(axis=1)
    cross_ab = per_node[a].sum(axis=1) * per_node[b].sum(axis=1) - within_ab
    within_same, cross_same = _same_hash_counts(inv, sha_code, split_code, per_node, n_split)
    members = _Members(inv, len(uniq))
    ctx = (rows, members, split_code, sha_code)
    return _result(
        distance, len(values), rows, len(uniq), within_ab.sum() + within_same.sum(), cross_ab.sum() + cross_same.sum(),
        _examples(ctx, a, b, dist, within_ab, within_same, False, max_examples),
        _examples(ctx, a, b, dist, cross_ab, cross_same, True, max_examples), stats,
    )


def _result(distance, n_values, rows, n_unique, within, cross, within_examples, cross_examples, stats) -> dict:
    return {
        "distance": int(distance), "bands": len(band_layout(distance)), "hashes": int(len(rows)),
        "invalid_hashes": int(n_values - len(rows)), "unique_hashes": int(n_unique),
        "within_split_pairs": int(within), "cross_split_pairs": int(cross),
        "within_examples": within_examples, "cross_examples": cross_examples,
        "comparisons": int(stats.get("comparisons", 0)), "capped_buckets": int(stats.get("capped_buckets", 0)),
        "skipped_comparisons": int(stats.get("skipped_comparisons", 0)),
        "capped": bool(stats.get("capped_buckets") or stats.get("budget_exhausted")),
    }


def _bincount2(row: np.ndarray, col: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    return np.bincount(row * n_cols + col, minlength=n_rows * n_cols).reshape(n_rows, n_cols).astype(np.int64)


def _pairs_within(m: np.ndarray) -> np.ndarray:
    """Per row: pairs of members that share a split (sum of n choose 2)."""
    return (m * (m - 1) // 2).sum(axis=1)


def _pairs_across(m: np.ndarray) -> np.ndarray:
    """Per row: pairs of members in different splits."""
    total = m.sum(axis=1)
    return (total * total - (m * m).sum(axis=1)) // 2


def _same_hash_counts(inv, sha_code, split_code, per_node, n_split) -> tuple[np.ndarray, np.ndarray]:
    """Pairs inside each identical-hash node that are NOT the same file (same sha256)."""
    combo, combo_inv = np.unique(inv.astype(np.int64) * (int(sha_code.max(initial=0)) + 1) + sha_code,
                                 return_inverse=True)
    per_file = _bincount2(combo_inv, split_code, len(combo), n_split)
    node_of_file = combo // (int(sha_code.max(initial=0)) + 1)
    within = _pairs_within(per_node) - np.bincount(node_of_file, _pairs_within(per_file),
                                                   minlength=len(per_node)).astype(np.int64)
    across = _pairs_across(per_node) - np.bincount(node_of_file, _pairs_across(per_file),
                                                   minlength=len(per_node)).astype(np.int64)
    return within, across


class _Members:
    """Sample positions per hash node, sliced on demand (only example candidates need them)."""

    def __init__(self, inv: np.ndarray, n_nodes: int) -> None:
        self.order = np.argsort(inv, kind="stable")
        self.bounds = np.r_[0, np.cumsum(np.bincount(inv, minlength=n_nodes))]

    def __getitem__(self, u: int) -> np.ndarray:
        return self.order[self.bounds[u]:self.bounds[u + 1]]


def _examples(ctx, a, b, dist, count_ab, count_same, cross: bool, limit: int) -> list[dict]:
    """Up to ``limit`` sample pairs, closest first, one per pair of hash nodes."""
    rows, members, split_code, sha_code = ctx
    out: list[dict] = []
    candidates = [(0, u, u) for u in np.flatnonzero(count_same > 0)[:limit]]
    order = np.argsort(dist, kind="stable")
    candidates += [(int(dist[i]), int(a[i]), int(b[i])) for i in order[count_ab[order] > 0][:limit]]
    for d, u, v in candidates:
        if len(out) >= limit:
            break
        pair = _one_pair(members[u], members[v], u == v, cross, split_code, sha_code)
        if pair:
            out.append({"a": int(rows[pair[0]]), "b": int(rows[pair[1]]), "distance": d})
    return out


def _one_pair(mu, mv, same_node: bool, cross: bool, split_code, sha_code, budget: int = 10_000):
    """First member pair with the wanted split relation (and different files); bounded search."""
    for i, x in enumerate(mu):
        for y in (mu[i + 1:] if same_node else mv):
            budget -= 1
            if budget < 0:
                return None
            if (split_code[x] != split_code[y]) == cross and sha_code[x] != sha_code[y]:
                return int(x), int(y)
    return None
