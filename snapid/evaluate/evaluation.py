"""`snapid eval`: a run (or an ensemble) on one split of its prepared cache → every figure of the
evaluation report, written beside the run (eval-<split>.json, eval-<split>-preds.npz) and recorded
in the database as the artifact "eval_<split>"."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from snapid import metrics
from snapid.errors import SnapidError
from snapid.evaluate import calibrate
from snapid.evaluate.sources import logits_for, trained_members
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace, atomic_write_bytes, atomic_write_text

MAX_DENSE_CLASSES = 200   # above this the confusion is stored as its largest off-diagonal cells only
MAX_PAIRS = 500
MAX_MISTAKES = 24
THUMBNAIL_PX = 96
LATENCY_ITEMS = 5
HEADLINE = ("top1", "top5", "macro_top1", "macro_top5", "macro_f1", "balanced_accuracy", "ece", "ece_uncalibrated",
            "n", "tta", "latency_ms", "parameters")
SPLITS = ("train", "val", "test")


def held_out_split(name: str, *, engine: Engine) -> tuple[str, str]:
    """The split to report on when none is asked for: ("test", "") when the run's dataset has test
    photos, else ("val", a note saying so), e.g. for a dataset that came with train/ and val/ only."""
    from snapid.track import datasets as dataset_store
    from snapid.track import runs as track
    from snapid.track.db import transaction

    with transaction(engine) as s:
        run = track.get_run(s, name=name)
        counts = dataset_store.split_counts(s, name=run["dataset"], version=run["dataset_version"])
    if counts.get("test"):
        return "test", ""
    return "val", (f"{run['dataset']} v{run['dataset_version']} has no test photos: reporting on the validation "
                   "split, which also chose the threshold (figures there are a little optimistic)")


def evaluate_run(name: str, *, workspace: Workspace, engine: Engine, split: str = "test", tta: bool = False,
                 recalibrate: bool = False, target_accuracy: float | None = None, target_coverage: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate ``name`` on ``split``: calibrates first when the run has no calibration yet (or when
    asked to, or when the target changed), then predicts, scores, stores and returns the result dict:
    headline figures, per-class table, confusion, reliability (before and after calibration), long
    tail, accuracy-coverage curve and the hardest mistakes with thumbnails."""
    if split not in SPLITS:
        raise SnapidError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}", code="usage", status=422)
    calibrate.check_targets(target_accuracy, target_coverage)
    step = progress or (lambda done, total: None)
    step(0, 4)
    calibration = ensure_calibration(name, workspace=workspace, engine=engine, recalibrate=recalibrate,
                                     target_accuracy=target_accuracy, target_coverage=target_coverage)
    step(1, 4)
    logits, labels, dataset = logits_for(name, split, workspace=workspace, engine=engine, tta=tta)
    if len(labels) == 0:
        raise SnapidError(f"run {name!r}: the {split!r} split of its dataset is empty", code="empty_split", status=422)
    step(2, 4)
    members = trained_members(name, engine=engine)
    train_counts = _train_counts(members[0], workspace=workspace, engine=engine)
    result, arrays = score_split(logits, labels, classes=members[0].classes, train_counts=train_counts,
                                 temperature=calibration["temperature"], threshold=calibration["threshold"])
    step(3, 4)
    result = {"run": name, "split": split, "tta": tta, "n": len(labels),
              "created_at": datetime.now(UTC).isoformat(timespec="seconds"), **result,
              "calibration": {k: calibration.get(k)
                              for k in (*calibrate.DEFAULTS, "val_coverage", "target_met", "note")},
              "latency_ms": sum(single_image_latency_ms(m, dataset) for m in members),
              "parameters": sum(sum(p.numel() for p in m.model.parameters()) for m in members)}
    result["mistakes"] = mistakes_gallery(dataset, arrays, members[0].classes)
    if len(members) == 1:  # where the model looked, over each mistake (issue 19); an ensemble has no single map
        from snapid.evaluate.heatmaps import add_heatmaps

        add_heatmaps(members[0], dataset, result["mistakes"], members[0].classes)
    result = clean_json(result)
    store_result(name, split, result, arrays, engine=engine)
    step(4, 4)
    return result


def ensure_calibration(name: str, *, workspace: Workspace, engine: Engine, recalibrate: bool = False,
                       target_accuracy: float | None = None, target_coverage: float | None = None) -> dict:
    """The run's calibration, fitted now if it has none, if asked, or if a different target is asked
    for (a refit without a target keeps the stored one). Always fitted without TTA: it is what
    serving uses. Without a validation split the identity calibration is used (and said so)."""
    stored = calibrate.stored_calibration(name, engine=engine)
    changed = ((target_accuracy is not None and stored["target_accuracy"] != target_accuracy)
               or (target_coverage is not None and stored["target_coverage"] != target_coverage))
    if not (recalibrate or changed or not calibrate.has_calibration(name, engine=engine)):
        return stored
    if target_accuracy is None and target_coverage is None:
        target_accuracy, target_coverage = stored["target_accuracy"], stored["target_coverage"]
    try:
        return calibrate.calibrate_run(name, workspace=workspace, engine=engine, target_accuracy=target_accuracy,
                                       target_coverage=target_coverage)
    except calibrate.NoValidationSplit as exc:
        return {**calibrate.DEFAULTS, "note": exc.message}


def _train_counts(trained, *, workspace: Workspace, engine: Engine) -> np.ndarray:
    from snapid.evaluate.loaded import split_dataset

    return split_dataset(trained, "train", workspace=workspace, engine=engine).class_counts()


# ----------------------------------------------------------------------------- pure scoring

def score_split(logits: np.ndarray, labels: np.ndarray, *, classes: list[dict], train_counts: np.ndarray,
                temperature: float = 1.0, threshold: float = 0.0) -> tuple[dict, dict]:
    """Every figure of the report from the logits (pure). Returns (result dict, per-sample arrays)."""
    num_classes = len(classes)
    probs, raw = metrics.softmax(logits, temperature), metrics.softmax(logits)
    preds = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    correct = preds == labels
    probs_true = probs[np.arange(len(labels)), labels]
    counts = metrics.confusion_matrix(preds, labels, num_classes)
    class_top1 = metrics.per_class_topk(probs, labels, 1)
    accepted = confidence >= threshold
    result = {
        "top1": metrics.topk_accuracy(probs, labels, 1), "top5": metrics.topk_accuracy(probs, labels, 5),
        "macro_top1": metrics.macro_topk(probs, labels, 1), "macro_top5": metrics.macro_topk(probs, labels, 5),
        "macro_f1": metrics.macro_f1(probs, labels),
        "balanced_accuracy": metrics.balanced_accuracy(preds, labels, num_classes),
        "ece": metrics.expected_calibration_error(probs, labels),
        "ece_uncalibrated": metrics.expected_calibration_error(raw, labels),
        "nll": metrics.nll(logits, labels, temperature), "nll_uncalibrated": metrics.nll(logits, labels),
        "temperature": float(temperature), "threshold": float(threshold),
        "coverage_at_threshold": float(accepted.mean()),
        "accuracy_at_threshold": float(correct[accepted].mean()) if accepted.any() else None,
        "per_class": per_class_rows(counts, class_top1, classes, train_counts),
        "confusion": confusion_block(counts, classes),
        "reliability": metrics.reliability_bins(probs, labels),
        "reliability_uncalibrated": metrics.reliability_bins(raw, labels),
        "long_tail": metrics.long_tail_buckets(class_top1, train_counts),
        "coverage": metrics.coverage_curve(confidence, correct),
    }
    arrays = {"labels": labels.astype(np.int64), "preds": preds.astype(np.int64),
              "probs_true": probs_true.astype(np.float32), "correct": correct,
              "confidence": confidence.astype(np.float32)}
    return result, arrays


def per_class_rows(counts: np.ndarray, class_top1: np.ndarray, classes: list[dict],
                   train_counts: np.ndarray) -> list[dict]:
    precision, recall, f1, support = metrics.per_class_prf(counts)
    return [{"index": i, "id": c["id"], "name": c.get("name", c["id"]), "precision": float(precision[i]),
             "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i]),
             "train_count": int(train_counts[i]) if i < len(train_counts) else 0, "top1": float(class_top1[i])}
            for i, c in enumerate(classes)]


def confusion_block(counts: np.ndarray, classes: list[dict]) -> dict:
    """Dense counts and row-normalised shares up to MAX_DENSE_CLASSES classes; above that only the
    MAX_PAIRS most frequent confusions (a 1000-class dense matrix would be a million numbers)."""
    ids = [c["id"] for c in classes]
    if len(classes) <= MAX_DENSE_CLASSES:
        normalized = np.round(metrics.normalize_rows(counts), 4)
        return {"format": "dense", "labels": ids, "counts": counts.astype(int).tolist(),
                "normalized": normalized.tolist()}
    pairs = metrics.top_confused_pairs(counts, MAX_PAIRS)
    return {"format": "top_pairs", "labels": ids,
            "note": f"{len(classes)} classes: only the {MAX_PAIRS} largest confusions are kept",
            "pairs": [{"true": ids[t], "pred": ids[p], "count": n} for t, p, n in pairs]}


# ----------------------------------------------------------------------------- gallery, latency, storage

def thumbnail_data_uri(pixels: np.ndarray, side: int = THUMBNAIL_PX) -> str:
    """H x W x 3 uint8 → a small JPEG as a data: URI (HTML reports embed it, no extra files)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mistakes_gallery(dataset, arrays: dict, classes: list[dict], limit: int = MAX_MISTAKES) -> list[dict]:
    """The highest-loss wrong answers, hardest first, each with its thumbnail."""
    rows = []
    for i in metrics.hardest_mistakes(arrays["probs_true"], arrays["correct"], limit):
        true, pred = int(arrays["labels"][i]), int(arrays["preds"][i])
        pixels = dataset[int(i)][0].permute(1, 2, 0).numpy()
        rows.append({"position": int(i), "true": classes[true]["id"], "true_name": classes[true].get("name"),
                     "pred": classes[pred]["id"], "pred_name": classes[pred].get("name"),
                     "score": float(arrays["confidence"][i]),
                     "loss": float(-math.log(max(float(arrays["probs_true"][i]), 1e-12))),
                     "thumbnail": thumbnail_data_uri(pixels)})
    return rows


def single_image_latency_ms(trained, dataset, items: int = LATENCY_ITEMS) -> float:
    """Median wall time of the eager torch model on one image (batch 1, CPU): a few items, each
    timed three times after two warm-up calls (the first calls pay for allocator and kernel setup)."""
    import torch

    from snapid.data.cached_dataset import normalize

    p = trained.preprocess
    inputs = [normalize(dataset[i][0][None], p["mean"], p["std"]) for i in range(min(items, len(dataset)))]
    times = []
    with torch.no_grad():
        for x in inputs[:1] * 2:
            trained.model(x)
        for x in inputs * 3:
            started = time.perf_counter()
            trained.model(x)
            times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def clean_json(value):
    """NaN and infinity are not JSON: store them as null (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return clean_json(value.item())
    return value


def store_result(name: str, split: str, result: dict, arrays: dict, *, engine: Engine) -> Path:
    """eval-<split>.json and eval-<split>-preds.npz into the run folder (atomically), then the
    artifact "eval_<split>" with the headline figures as its meta."""
    folder = Path(calibrate.run_kind(name, engine=engine)["run_dir"])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(folder / f"eval-{split}-preds.npz", buffer.getvalue())
    text = json.dumps(result, ensure_ascii=False, indent=1)
    path = folder / f"eval-{split}.json"
    atomic_write_text(path, text)
    with transaction(engine) as s:
        track.record_artifact(s, name=name, kind=f"eval_{split}", path=str(path),
                              sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                              meta={k: result.get(k) for k in HEADLINE})
    return path
