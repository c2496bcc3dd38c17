"""Classification metrics as pure NumPy functions of (probabilities or logits, labels)."""

from __future__ import annotations

import itertools

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of samples whose true label is among the k highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_prf(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support


def macro_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean F1 over the classes present in ``labels`` (absent classes would only add zeros)."""
    if len(labels) == 0:
        return float("nan")
    num_classes = scores.shape[1]
    _, _, f1, support = per_class_prf(confusion_matrix(scores.argmax(axis=1), labels, num_classes))
    return float(f1[support > 0].mean())


def mean_and_std(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None where there are too few values): the spread over seeds."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    return (float(values.mean()) if len(values) else None,
            float(values.std(ddof=1)) if len(values) > 1 else None)


def classification_summary(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The per-epoch validation figures: top-1, top-5, macro-F1."""
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, 5),
            "macro_f1": macro_f1(scores, labels)}


# ----------------------------------------------------------------------------- probabilities

def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, computed stably (float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / temperature)."""
    if len(labels) == 0:
        return float("nan")
    return float(-log_softmax(logits, temperature)[np.arange(len(labels)), labels].mean())


# ----------------------------------------------------------------------------- class-balanced figures

def per_class_topk(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Top-k accuracy of each class over its own samples (NaN for a class with none)."""
    num_classes = scores.shape[1]
    k = min(k, num_classes)
    if len(labels) == 0:
        return np.full(num_classes, np.nan)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hit = (top == labels[:, None]).any(axis=1).astype(float)
    support = np.bincount(labels, minlength=num_classes).astype(float)
    hits = np.bincount(labels, weights=hit, minlength=num_classes)
    return np.divide(hits, support, out=np.full(num_classes, np.nan), where=support > 0)


def macro_topk(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Mean over the classes present of their top-k accuracy: every class weighs the same however
    rare (the Pl@ntNet-300K benchmark's metric for long-tailed data)."""
    per_class = per_class_topk(scores, labels, k)
    present = ~np.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else float("nan")


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's balanced_accuracy_score)."""
    if len(labels) == 0:
        return float("nan")
    _, recall, _, support = per_class_prf(confusion_matrix(pred, labels, num_classes))
    return float(recall[support > 0].mean())


def normalize_rows(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its total (rows of a class with no samples stay 0)."""
    totals = confusion.sum(axis=1, keepdims=True).astype(float)
    return np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)


def top_confused_pairs(confusion: np.ndarray, limit: int = 500) -> list[tuple[int, int, int]]:
    """The ``limit`` largest off-diagonal cells as (true, predicted, count), largest first: what a
    many-class confusion matrix is worth keeping."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.flatnonzero(off)
    if len(flat) > limit:
        flat = flat[np.argpartition(-off.ravel()[flat], limit - 1)[:limit]]
    order = sorted(flat, key=lambda i: (-off.ravel()[i], i))
    n = confusion.shape[1]
    return [(int(i // n), int(i % n), int(off.ravel()[i])) for i in order]


# ----------------------------------------------------------------------------- calibration

def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Equal-width confidence bins: mean confidence (top probability) against accuracy in each.
    Empty bins are kept (count 0, confidence and accuracy None) so every diagram has the same x axis."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "confidence": float(confidence[inside].mean()) if count else None,
                     "accuracy": float(correct[inside].mean()) if count else None})
    return bins


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap |accuracy - confidence| over the reliability bins."""
    if len(labels) == 0:
        return float("nan")
    bins = reliability_bins(probs, labels, n_bins)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / len(labels))


# ----------------------------------------------------------------------------- long tail

TAIL_EDGES = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def long_tail_buckets(class_top1: np.ndarray, train_counts: np.ndarray,
                      edges: tuple[int, ...] = TAIL_EDGES) -> list[dict]:
    """Accuracy against class frequency: classes grouped by their number of training images
    (buckets [edge_i, edge_i+1) on a roughly logarithmic scale), with the mean top-1 of the classes
    in each bucket that have evaluation samples. Empty buckets are left out."""
    counts = np.asarray(train_counts)
    bounds = (0,) + tuple(edges) + (np.iinfo(np.int64).max,)
    out = []
    for lo, hi in itertools.pairwise(bounds):
        inside = (counts >= lo) & (counts < hi)
        if not inside.any():
            continue
        scored = inside & ~np.isnan(class_top1)
        label = f"{lo}+" if hi == bounds[-1] else (f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}")
        out.append({"bucket": label, "classes": int(inside.sum()), "train_min": int(counts[inside].min()),
                    "train_max": int(counts[inside].max()),
                    "top1": float(class_top1[scored].mean()) if scored.any() else None})
    return out


# ----------------------------------------------------------------------------- open set

def coverage_curve(confidence: np.ndarray, correct: np.ndarray, points: int = 101) -> list[dict]:
    """Accuracy of the accepted answers against coverage (their share) as the rejection threshold
    rises: at most ``points`` thresholds, spread over the confidence quantiles."""
    if len(confidence) == 0:
        return []
    thresholds = np.unique(np.concatenate([[0.0], np.quantile(confidence, np.linspace(0, 1, points - 1))]))
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, hits = confidence[order], np.cumsum(correct[order])
    curve = []
    for t in thresholds:
        accepted = int(np.searchsorted(-conf_sorted, -t, side="right"))  # how many have confidence >= t
        curve.append({"threshold": float(t), "coverage": accepted / len(confidence),
                      "accuracy": float(hits[accepted - 1] / accepted) if accepted else None})
    return curve


def wilson_lower(hits: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """Wilson score lower bound of a binomial proportion, ``z`` standard errors down (z = 0: hits / n)."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, *, target_accuracy: float | None = None,
                     target_coverage: float | None = None, z: float = 0.0) -> float:
    """The rejection threshold: answers with confidence >= threshold are given, others are "unknown".

    For a target accuracy: the lowest threshold (most coverage) whose accepted answers are at least
    that accurate; 1.0 (reject nearly everything) when no threshold reaches it. With ``z`` > 0 the
    accuracy must hold for the Wilson lower bound, ``z`` standard errors below the observed share:
    the cut with the most coverage is otherwise picked where the observed accuracy happens to be
    high by chance, and falls short on new photos. For a target coverage:
    the highest threshold that still accepts at least that share. Ties in confidence move together,
    since one threshold cannot split them."""
    if (target_accuracy is None) == (target_coverage is None):
        raise ValueError("give exactly one of target_accuracy and target_coverage")
    if len(confidence) == 0:
        return 0.0
    order = np.argsort(-confidence, kind="stable")
    conf_sorted = confidence[order]
    # only cut where the confidence changes: the last index of each run of equal values
    ends = np.append(np.nonzero(np.diff(conf_sorted))[0], len(conf_sorted) - 1)
    if target_coverage is not None:
        need = max(1, int(np.ceil(target_coverage * len(confidence) - 1e-9)))
        return float(conf_sorted[ends[np.searchsorted(ends, need - 1)]])
    accuracy = wilson_lower(np.cumsum(correct[order])[ends].astype(float), ends + 1.0, z)
    good = np.nonzero(accuracy >= target_accuracy - 1e-12)[0]
    return float(conf_sorted[ends[good[-1]]]) if len(good) else 1.0


def hardest_mistakes(probs_true: np.ndarray, correct: np.ndarray, limit: int = 24) -> np.ndarray:
    """Indices of the wrong answers with the highest loss (lowest probability of the true class),
    hardest first."""
    wrong = np.nonzero(~np.asarray(correct, dtype=bool))[0]
    order = np.argsort(probs_true[wrong], kind="stable")
    return wrong[order[:limit]]
