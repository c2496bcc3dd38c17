"""`snapid detect eval`: mAP@0.5, mAP@0.5:0.95 (torchmetrics), precision and recall at the score
threshold, per class and overall, and a gallery of missed and false boxes.

Metrics are computed in the letterboxed frame: the letterbox is one uniform scale plus a shift, so
every IoU, and therefore every AP, equals the one in original pixels.
"""

from __future__ import annotations

import base64
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from sqlalchemy.engine import Engine

from snapid.detect.data import collate, detection_split
from snapid.detect.matching import count_matches, greedy_match
from snapid.errors import SnapidError
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace, atomic_write_json

GALLERY = 12          # missed + false boxes shown at most
THUMB = 128


@torch.no_grad()
def predict_dataset(model, dataset, *, batch_size: int = 4) -> list[dict[str, np.ndarray]]:
    """Detections (boxes in the S frame, scores, labels) for every photo of a DetectionDataset."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    out = []
    for pictures, _ in loader:
        for d in model(pictures):
            out.append({k: d[k].detach().cpu().numpy() for k in ("boxes", "scores", "labels")})
    return out


def targets_of(dataset) -> list[dict[str, np.ndarray]]:
    return [{"boxes": b.numpy(), "labels": labels.numpy()}
            for b, labels in (dataset.target(i) for i in range(len(dataset)))]


def _torch(items: list[dict[str, np.ndarray]]) -> list[dict[str, torch.Tensor]]:
    return [{k: torch.as_tensor(v) for k, v in d.items()} for d in items]


def map_scores(preds, targets, classes: list[str]) -> dict:
    """mAP@0.5, mAP@0.5:0.95, mAP@0.75 overall; AP@0.5 and AP@0.5:0.95 per class."""
    from torchmetrics.detection import MeanAveragePrecision

    full = MeanAveragePrecision(iou_type="bbox", class_metrics=True)
    at50 = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5], class_metrics=True)
    for metric in (full, at50):
        metric.update(_torch(preds), _torch(targets))
    r, r50 = full.compute(), at50.compute()

    def per_class(result) -> dict[int, float]:
        ids = result["classes"].reshape(-1).tolist()
        values = result["map_per_class"].reshape(-1).tolist()
        return {int(k): float(v) for k, v in zip(ids, values, strict=True)}

    ap, ap50 = per_class(r), per_class(r50)
    return {"map50": _finite(r["map_50"]), "map": _finite(r["map"]), "map75": _finite(r["map_75"]),
            "per_class_ap": {c: _finite(ap.get(i + 1, -1)) for i, c in enumerate(classes)},
            "per_class_ap50": {c: _finite(ap50.get(i + 1, -1)) for i, c in enumerate(classes)}}


def _finite(value) -> float | None:
    v = float(value)
    return v if np.isfinite(v) and v >= 0 else None   # torchmetrics uses -1 for "no ground truth"


def precision_recall(preds, targets, classes: list[str], threshold: float, iou: float = 0.5) -> dict:
    """Counts and precision/recall at one score threshold, overall and per class (same-label matching)."""
    counts = {c: [0, 0, 0] for c in classes}
    for p, t in zip(preds, targets, strict=True):
        keep = p["scores"] >= threshold
        matched = greedy_match(p["boxes"][keep], p["scores"][keep], t["boxes"], iou=iou,
                               pred_labels=p["labels"][keep], gt_labels=t["labels"])
        for k, c in enumerate(classes, start=1):
            mine = p["labels"][keep] == k
            tp, fp, _ = count_matches(matched[mine], 0)
            counts[c][0] += tp
            counts[c][1] += fp
            counts[c][2] += int((t["labels"] == k).sum()) - tp
    rows = {c: _pr(*v) for c, v in counts.items()}
    total = np.array(list(counts.values())).sum(axis=0) if counts else np.zeros(3, dtype=int)
    return {"overall": _pr(*total.tolist()), "per_class": rows}


def _pr(tp: int, fp: int, fn: int) -> dict:
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn),
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None}


def detection_metrics(preds, targets, classes: list[str], threshold: float) -> dict:
    return {**map_scores(preds, targets, classes), "at_threshold": precision_recall(preds, targets, classes, threshold)}


def gallery(dataset, preds, targets, threshold: float, limit: int = GALLERY) -> list[dict]:
    """Missed ground-truth boxes and false detections, worst first, as small JPEG data URIs."""
    found: list[tuple[float, int, str, np.ndarray, float]] = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        keep = p["scores"] >= threshold
        boxes, scores = p["boxes"][keep], p["scores"][keep]
        matched = greedy_match(boxes, scores, t["boxes"], pred_labels=p["labels"][keep], gt_labels=t["labels"])
        hit = set(matched[matched >= 0].tolist())
        found += [(1.0, i, "missed", t["boxes"][g], 0.0) for g in range(len(t["boxes"])) if g not in hit]
        found += [(float(s), i, "false", b, float(s)) for b, s, m in zip(boxes, scores, matched, strict=True) if m < 0]
    found.sort(key=lambda row: -row[0])   # missed first, then the most confident false boxes
    return [{"photo": dataset.samples[i].path, "kind": kind, "score": round(score, 4),
             "box": [round(float(v), 1) for v in box], "thumbnail": _thumbnail(dataset.picture(i), box, kind)}
            for _, i, kind, box, score in found[:limit]]


def _thumbnail(picture: np.ndarray, box, kind: str) -> str:
    im = Image.fromarray(picture)
    ImageDraw.Draw(im).rectangle([float(v) for v in box], outline=(255, 60, 60) if kind == "false" else (255, 200, 0),
                                 width=max(1, im.size[0] // 100))
    im.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def evaluate_detector(name: str, *, workspace: Workspace, engine: Engine, split: str = "test",
                      score_threshold: float | None = None) -> dict:
    """Evaluate a detector run on a split; writes <run_dir>/detect-eval-<split>.json and the artifact
    ``detect_eval_<split>`` (headline numbers in its meta). Returns the whole result."""
    from snapid.detect.loaded import load_detector

    model, meta = load_detector(name, engine=engine)
    with transaction(engine) as s:
        run = track.get_run(s, name=name)
        manifest = dataset_store.load_manifest(s, name=run["dataset"], version=run["dataset_version"])
    threshold = float(meta.get("score_threshold", 0.5) if score_threshold is None else score_threshold)
    dataset = detection_split(manifest, split, size=int(meta["size"]), classes=list(meta["classes"]))
    if not len(dataset):
        raise SnapidError(f"dataset {manifest.name!r} v{manifest.version} has no {split} photos with boxes",
                          code="empty_split", status=422)
    started = time.perf_counter()
    preds = predict_dataset(model, dataset)
    latency_ms = (time.perf_counter() - started) * 1000 / len(dataset)
    targets = targets_of(dataset)
    result = {"run": name, "split": split, "n": len(dataset), "objects": int(sum(len(t["labels"]) for t in targets)),
              "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "score_threshold": threshold,
              "classes": list(meta["classes"]), "size": int(meta["size"]), "latency_ms": round(latency_ms, 1),
              **detection_metrics(preds, targets, list(meta["classes"]), threshold),
              "gallery": gallery(dataset, preds, targets, threshold), "skipped": dict(dataset.failed)}
    path = Path(run["run_dir"]) / f"detect-eval-{split}.json"
    atomic_write_json(path, result)
    overall = result["at_threshold"]["overall"]
    headline = {"map50": result["map50"], "map": result["map"], "precision": overall["precision"],
                "recall": overall["recall"], "n": result["n"], "score_threshold": threshold,
                "latency_ms": result["latency_ms"]}
    with transaction(engine) as s:
        track.record_artifact(s, name=name, kind=f"detect_eval_{split}", path=str(path), meta=headline)
    return result
