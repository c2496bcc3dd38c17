"""Pure box matching (NumPy): IoU, and greedy score-ordered matching of predictions to ground truth.

Used for precision/recall at a score threshold, the missed/false gallery, and per-object accuracy
of the detect → crop experiment. mAP itself comes from torchmetrics.
"""

from __future__ import annotations

import numpy as np


def box_iou(a, b) -> np.ndarray:
    """IoU matrix (len(a) x len(b)) of two N x 4 corner-box arrays."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_match(pred_boxes, pred_scores, gt_boxes, *, iou: float = 0.5, pred_labels=None,
                 gt_labels=None) -> np.ndarray:
    """For each prediction, the index of the ground-truth box it matches, or -1.

    Predictions are taken by descending score; each takes the unmatched ground truth of the same
    label (when labels are given) with the highest IoU >= ``iou`` (the VOC/COCO rule)."""
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    matched = np.full(len(pred_boxes), -1, dtype=np.int64)
    if not len(pred_boxes) or not len(gt_boxes):
        return matched
    overlaps = box_iou(pred_boxes, gt_boxes)
    if pred_labels is not None and gt_labels is not None:
        same = np.asarray(pred_labels).reshape(-1, 1) == np.asarray(gt_labels).reshape(1, -1)
        overlaps = np.where(same, overlaps, 0.0)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for p in np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable"):
        row = np.where(taken, -1.0, overlaps[p])
        best = int(row.argmax())
        if row[best] >= iou:
            matched[p], taken[best] = best, True
    return matched


def count_matches(matched: np.ndarray, n_gt: int) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) from greedy_match's result."""
    tp = int((matched >= 0).sum())
    return tp, int(len(matched) - tp), int(n_gt - tp)
