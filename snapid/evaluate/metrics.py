"""Classification metrics as pure NumPy functions of (probabilities or logits, labels)."""

from __future__ import annotations

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
    return np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


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


def classification_summary(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The per-epoch validation figures: top-1, top-5, macro-F1."""
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, 5),
            "macro_f1": macro_f1(scores, labels)}
