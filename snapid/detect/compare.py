"""`snapid detect compare`: classification accuracy on whole photos vs on the detector's crops —
the product project's 87 % → 95 % experiment.

For each photo of the split with boxes whose labels the classifier knows:
- photos whose ground truth has one label: the classifier's answer on the whole photo (resized like
  its preprocess) vs on the crop of the detector's highest-scoring box (padded with the classifier's
  own pad, resized the same way). No box above the threshold: the whole photo is used (a fallback,
  counted). The crop of the ground-truth box is scored too: the ceiling a perfect detector reaches.
- photos with several labels: per object. A ground-truth object matched by a detection (IoU >= 0.5)
  is right when that crop's class is its label; an object no detection matches counts as wrong.
  The whole photo gives one answer, right for the objects of that class.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sqlalchemy.engine import Engine

from snapid import geometry, images
from snapid.detect.geometry import letterbox_geometry, to_original
from snapid.detect.matching import greedy_match
from snapid.errors import SnapidError
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace, atomic_write_json

MAX_COMPARISONS = 50   # comparisons listed in one detector run's `detect_compare` artifact


class Classify:
    """The classifier of a trained run on PIL pictures, with its own resize and normalisation."""

    def __init__(self, trained):
        from snapid.train.augment import Normalize

        pre = trained.preprocess
        self.model, self.size, self.resize, self.pad = (trained.model.eval(), int(pre["size"]), pre["resize"],
                                                        float(pre["pad"]))
        self.normalize = Normalize(tuple(pre["mean"]), tuple(pre["std"]))
        self.ids = [c["id"] for c in trained.classes]

    @torch.no_grad()
    def __call__(self, pictures: list[Image.Image]) -> list[str]:
        if not pictures:
            return []
        arrays = np.stack([np.asarray(geometry.fit(p, self.size, self.resize), dtype=np.uint8) for p in pictures])
        x = self.normalize(torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous())
        return [self.ids[i] for i in self.model(x).argmax(1).tolist()]

    def crop(self, picture: Image.Image, box) -> Image.Image:
        region = geometry.padded_box(box, self.pad, picture.size[0], picture.size[1])
        return picture.crop(geometry.crop_rect(region))


@torch.no_grad()
def detections(model, picture: Image.Image, size: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(boxes in original pixels sorted by score, scores) above ``threshold``, from a letterboxed input."""
    w, h = picture.size
    scale, pad_x, pad_y = letterbox_geometry(w, h, size)
    canvas = np.asarray(geometry.letterbox(picture, size), dtype=np.uint8)
    out = model([torch.from_numpy(canvas.copy()).permute(2, 0, 1).float().div_(255)])[0]
    keep = out["scores"] >= threshold
    scores = out["scores"][keep].numpy()
    order = np.argsort(-scores, kind="stable")
    return to_original(out["boxes"][keep].numpy(), scale, pad_x, pad_y, w, h)[order], scores[order]


def photo_record(sample, picture: Image.Image, classify: Classify, model, meta: dict, threshold: float) -> dict:
    """What happened on one photo: whole-photo answer, detector crops' answers, ground-truth crops' answers."""
    labels = [b.label or sample.label for b in sample.boxes]
    gt = np.array([[b.x1, b.y1, b.x2, b.y2] for b in sample.boxes], dtype=np.float64)
    t0 = time.perf_counter()
    whole = classify([picture])[0]
    t1 = time.perf_counter()
    boxes, scores = detections(model, picture, int(meta["size"]), threshold)
    t2 = time.perf_counter()
    record = {"path": sample.path, "labels": labels, "whole": whole, "boxes": len(boxes),
              "gt_crops": classify([classify.crop(picture, b) for b in gt])}
    if len(set(labels)) == 1:
        record["single"] = True
        record["crops"] = classify([classify.crop(picture, boxes[0])]) if len(boxes) else []
    else:
        record["single"] = False
        matched = greedy_match(boxes, scores, gt)
        by_gt = {int(g): int(p) for p, g in enumerate(matched) if g >= 0}
        answers = classify([classify.crop(picture, boxes[by_gt[g]]) for g in sorted(by_gt)])
        found = dict(zip(sorted(by_gt), answers, strict=True))
        record["crops"] = [found.get(g) for g in range(len(gt))]
    t3 = time.perf_counter()
    record["ms"] = {"whole": (t1 - t0) * 1000, "detect": (t2 - t1) * 1000, "crops": (t3 - t2) * 1000}
    return record


def tally(records: list[dict]) -> dict:
    """Pure: accuracy with and without the detect → crop stage, from photo_record results."""
    single = [r for r in records if r["single"]]
    multi = [r for r in records if not r["single"]]
    crop_single = [(r["crops"][0] if r["crops"] else r["whole"]) == r["labels"][0] for r in single]
    objects = [(label, r["whole"], crop, gt_crop) for r in multi
               for label, crop, gt_crop in zip(r["labels"], r["crops"], r["gt_crops"], strict=True)]
    return {
        "single": {"photos": len(single), "whole_top1": _mean([r["whole"] == r["labels"][0] for r in single]),
                   "crop_top1": _mean(crop_single),
                   "gt_crop_top1": _mean([r["gt_crops"][0] == r["labels"][0] for r in single]),
                   "fallback": sum(1 for r in single if not r["crops"])},
        "multi": {"photos": len(multi), "objects": len(objects),
                  "whole_top1": _mean([w == y for y, w, _, _ in objects]),
                  "crop_top1": _mean([c == y for y, _, c, _ in objects]),
                  "detected": _mean([c is not None for _, _, c, _ in objects]),
                  "gt_crop_top1": _mean([g == y for y, _, _, g in objects])},
    }


def _mean(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def compare_two_stage(dataset: str, *, classifier: str, detector: str, workspace: Workspace, engine: Engine,
                      split: str = "test", score_threshold: float | None = None, version: int | None = None,
                      progress=None) -> dict:
    """Run the experiment on ``split``; writes <detector run_dir>/compare-<classifier>-<split>.json and the
    detector run's artifact ``detect_compare`` (meta: this comparison's figures, and ``comparisons``:
    every one made with this detector). ``workspace`` is unused (paths come from the runs)."""
    from snapid.detect.loaded import load_detector
    from snapid.evaluate.loaded import load_trained

    trained = load_trained(classifier, engine=engine)
    model, meta = load_detector(detector, engine=engine)
    classify = Classify(trained)
    threshold = float(meta.get("score_threshold", 0.5) if score_threshold is None else score_threshold)
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=dataset, version=version)
        det_run = track.get_run(s, name=detector)
    known = set(classify.ids)
    samples = [s for s in manifest.samples if s.split == split and s.boxes
               and all((b.label or s.label) in known for b in s.boxes)]
    if not samples:
        raise SnapidError(f"dataset {dataset!r} v{manifest.version} has no {split} photos with boxes of the "
                          f"classes classifier {classifier!r} knows", code="empty_split", status=422)
    records = []
    for n, sample in enumerate(samples, start=1):
        picture = images.decode_file(Path(manifest.root) / sample.path)
        records.append(photo_record(sample, picture, classify, model, meta, threshold))
        if progress:
            progress(n, len(samples))
    result = {"dataset": dataset, "version": manifest.version, "split": split, "classifier": classifier,
              "detector": detector, "score_threshold": threshold, "pad": classify.pad, **tally(records),
              "latency_ms": {k: round(float(np.mean([r["ms"][k] for r in records])), 1)
                             for k in ("whole", "detect", "crops")},
              "photos": [{k: r[k] for k in ("path", "labels", "whole", "crops", "gt_crops", "boxes")}
                         for r in records[:500]]}
    path = Path(det_run["run_dir"]) / f"compare-{classifier}-{split}.json"
    atomic_write_json(path, result)
    entry = {"classifier": classifier, "split": split, "path": str(path), "single": result["single"],
             "multi": result["multi"]}
    with transaction(engine) as s:
        earlier = next((a["meta"] for a in track.artifacts(s, name=detector) if a["kind"] == "detect_compare"), {})
        track.record_artifact(s, name=detector, kind="detect_compare", path=str(path),
                              meta=dict(entry, comparisons=merge_comparisons(earlier.get("comparisons", []), entry)))
    return result


def merge_comparisons(earlier: list[dict], entry: dict) -> list[dict]:
    """A run holds one artifact per kind, so the `detect_compare` artifact's meta lists every comparison
    (one per classifier and split, the newest last, at most MAX_COMPARISONS): the report finds them all."""
    key = (entry["classifier"], entry["split"])
    kept = [e for e in earlier if isinstance(e, dict) and (e.get("classifier"), e.get("split")) != key]
    return (kept + [entry])[-MAX_COMPARISONS:]
