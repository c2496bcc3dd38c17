"""`snapid data issues DATASET`: suspected label errors, outliers and near-duplicates that carry different
labels, found from the probe's pooled backbone features (issue 19).

1. Features: one clean view of every training and validation image, from the frozen backbone exactly as the
   probe phase computes them (snapid.train.features), through the same prepared cache. The backbone is a
   run's (``run``: its fine-tuned weights and preprocessing) or, by default, the most accurate pretrained
   one available here. Kept in the workspace's cache, so a second look costs seconds.
2. Out-of-fold probabilities: k stratified folds; for each, a linear head fitted by the probe's own L-BFGS
   solver on the other folds predicts the held-out one (the weight decay chosen on the first fold). No image
   is ever scored by a head that saw its label, and no backbone is retrained: seconds on a CPU.
3. Confident learning with cleanlab (``find_label_issues``: per-class thresholds from the joint of given and
   predicted labels, pruned by the estimated noise rates) marks the suspects it is confident about; the list
   also holds every other item whose out-of-fold prediction is another class (confident learning's count is an
   estimate, and on fine-grained classes it misses some errors). All are ranked by cleanlab's label quality
   (the out-of-fold probability of the given label), each with the most probable other class as a suggestion.
4. Outliers: cleanlab's OutOfDistribution on the features (mean cosine distance to the 10 nearest
   neighbours); flagged above Q3 + 1.7 IQR of those distances, the rule of cleanlab's Datalab.
5. Near-duplicates with different labels: pairs whose features' cosine similarity is at least
   ``similarity`` (0.97 by default) and whose labels differ.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import Engine

from snapid.data.cache import PrepareParams, index_path, plan_items, prepare
from snapid.data.cached_dataset import CachedDataset
from snapid.data.manifest import Manifest
from snapid.errors import SnapidError, UsageError
from snapid.evaluate.loaded import load_trained
from snapid.models import factory, registry
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from snapid.train import lbfgs
from snapid.train.augment import Normalize
from snapid.train.config import TrainConfig
from snapid.train.features import extract, frozen_backbone
from snapid.train.plan import CANDIDATES, FALLBACK, available
from snapid.train.setup import pick_device, prepare_params
from snapid.workspace import Workspace

FOLDS = 5
FILTER_BY = "prune_by_noise_rate"  # cleanlab's default rule for which suspects confident learning flags
SIMILARITY = 0.97        # cosine similarity from which two photos count as near-duplicates
OUTLIER_NEIGHBOURS = 10
OUTLIER_THRESHOLD = 0.37037  # cleanlab Datalab's default: flagged above Q3 + (1 / t - 1) IQR of the distances
MAX_CONFLICTS = 1000
FEATURES_FORMAT = 1

Progress = Callable[[int, int], None]


@dataclass
class Features:
    """Pooled features of every training and validation item, and what each item is."""

    x: np.ndarray              # N x D float32
    labels: np.ndarray         # N class indices into ``classes``
    paths: list[str]
    boxes: list[int | None]    # the box index of a crop item (datasets trained on box crops), else None
    splits: list[str]
    positions: np.ndarray      # each item's index in ``dataset`` (thumbnails)
    classes: list[dict]        # {"id", "name"}
    dataset: CachedDataset     # every item of the prepared cache (all splits)
    source: dict               # dataset, version, model, size, run


def default_model() -> str:
    """The most accurate backbone of the training planner's list whose pretrained weights are here."""
    for name, _ in CANDIDATES:
        if available(name):
            return name
    return FALLBACK


# ----------------------------------------------------------------------------- features

def _backbone(dataset: str, *, engine: Engine, run: str | None, model: str | None, size: int | None,
              version: int | None) -> tuple[Manifest, Callable[[], torch.nn.Module], PrepareParams, dict]:
    """(manifest, a maker of the classifier whose backbone embeds (built only when the features are not cached),
    prepare parameters, source record)."""
    if run is not None:
        if model is not None or size is not None:
            raise UsageError("--run uses the run's own backbone and input size: leave out --model and --size")
        trained = load_trained(run, engine=engine)
        if trained.run["dataset"] != dataset:
            raise UsageError(f"run {run!r} was trained on dataset {trained.run['dataset']!r}, not {dataset!r}")
        with transaction(engine) as s:
            manifest = dataset_store.load_manifest(s, name=dataset, version=trained.run["dataset_version"])
        source = {"run": run, "model": trained.meta["model"]["model"], "epoch": trained.meta.get("epoch")}
        return manifest, lambda: trained.model, trained.params, source
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=dataset, version=version)
    model = model or default_model()
    spec = registry.get_spec(model)
    params = prepare_params(manifest, TrainConfig(model=model, size=size, budget=None), spec.input_size)
    classes = max(len(manifest.classes), 1)
    def make() -> torch.nn.Module:
        return factory.create(model, classes, pretrained=True).eval()

    return manifest, make, params, {"run": None, "model": model}


def compute_features(dataset: str, *, workspace: Workspace, engine: Engine, run: str | None = None,
                     model: str | None = None, size: int | None = None, version: int | None = None,
                     device: str = "auto", batch_size: int = 32, workers: int = 1,
                     progress: Progress | None = None) -> Features:
    """Features of every training and validation item (cached in the workspace after the first time)."""
    manifest, make_net, params, source = _backbone(dataset, engine=engine, run=run, model=model, size=size,
                                                   version=version)
    prepare(manifest, workspace, params, workers=workers)
    index = index_path(workspace, params, manifest.name, manifest.version)
    table = np.load(index.with_suffix(".npz"))
    everything = CachedDataset(index, split=None)
    positions = np.nonzero(table["split"] <= 1)[0]          # train (0) and val (1)
    if len(positions) < 2:
        raise SnapidError(f"dataset {dataset!r} v{manifest.version} has {len(positions)} training and validation "
                          "images: too few to look for label issues", code="bad_dataset", status=422)
    _, uses = plan_items(manifest, params)
    use, box = table["use"][positions], table["box"][positions]
    source = {"dataset": manifest.name, "version": manifest.version, **source, "size": params.size,
              "crop_boxes": params.crop_boxes}
    # keyed by what the items are (photo sha256 and box), not by the version: a relabelled version reuses them
    items = hashlib.sha256("\n".join(uses[u][3] for u in use).encode()).hexdigest()
    key = {"features": FEATURES_FORMAT, "model": source["model"], "run": source.get("run"),
           "epoch": source.get("epoch"), "params": params.key_dict(), "items": items}
    cached = workspace.cache_dir(key) / "features.npy"
    if cached.is_file():
        x = np.load(cached)
    else:
        x = _extract(make_net(), everything, positions, device=device, batch_size=batch_size, progress=progress)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, x)
        tmp.replace(cached)
    return Features(x=x.astype(np.float32), labels=everything.labels[positions], positions=positions,
                    paths=[uses[u][0].path for u in use], boxes=[int(b) if b >= 0 else None for b in box],
                    splits=[uses[u][0].split for u in use], dataset=everything, source=source,
                    classes=[{"id": c["id"], "name": c.get("name") or c["id"]} for c in everything.classes])


def _extract(net, dataset: CachedDataset, positions: np.ndarray, *, device: str, batch_size: int,
             progress: Progress | None) -> np.ndarray:
    dev = pick_device(device)
    spec = net.spec
    backbone = frozen_backbone(net).to(dev).to(memory_format=torch.channels_last)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(positions))

    feats, _ = extract(backbone, dataset, transform=Normalize(spec.mean, spec.std).to(dev), device=dev,
                       batch_size=batch_size, seed=0, indices=positions, channels_last=True, on_batch=tick)
    return feats.float().numpy()


# ----------------------------------------------------------------------------- out-of-fold probabilities

def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per item: each class dealt round-robin over the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        out[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return out


@contextmanager
def one_thread():
    """Torch on one thread while it fits the small heads: measured 10x faster than two threads on a busy
    two-core machine (small L-BFGS steps spend their time waking threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit_predict(x_fit, y_fit, x_out, num_classes: int, weight_decay: float) -> np.ndarray:
    xf = torch.from_numpy(x_fit)
    weight, bias, _ = lbfgs.fit_linear(xf, torch.from_numpy(y_fit), num_classes, weight_decay=weight_decay,
                                       loss_fn=torch.nn.CrossEntropyLoss(), stats=lbfgs.standardiser(xf))
    with torch.no_grad():
        return torch.softmax(torch.from_numpy(x_out) @ weight.T + bias, dim=1).numpy()


def out_of_fold(x: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = FOLDS, seed: int = 0,
                weight_decay: float | None = None) -> tuple[np.ndarray, float]:
    """(N x C out-of-fold probabilities, the weight decay used): each item scored by a linear head fitted on
    the other folds. The weight decay, unless given, is the one of the probe's grid with the lowest held-out
    log loss on the first fold."""
    folds = int(min(max(folds, 2), len(labels)))
    fold = stratified_folds(labels, folds, seed)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    if weight_decay is None:
        held, fit = fold == 0, fold != 0
        losses = []
        for wd in lbfgs.WEIGHT_DECAYS:
            p = _fit_predict(x[fit], labels[fit], x[held], num_classes, wd)
            losses.append(float(-np.log(np.clip(p[np.arange(held.sum()), labels[held]], 1e-12, 1)).mean()))
            if len(losses) > 1 and losses[-1] > losses[-2]:
                break  # the held-out loss is convex enough in the decay: past its minimum
        weight_decay = lbfgs.WEIGHT_DECAYS[int(np.argmin(losses))]
    for k in range(folds):
        held = fold == k
        if held.any():
            probs[held] = _fit_predict(x[~held], labels[~held], x[held], num_classes, weight_decay)
    return probs, float(weight_decay)


# ----------------------------------------------------------------------------- the three findings

def label_issues(labels: np.ndarray, probs: np.ndarray, *, filter_by: str = FILTER_BY) -> list[dict]:
    """Suspects, most likely wrong first: every item that cleanlab's confident learning flags (``confident``:
    True) or whose out-of-fold prediction is another class, ranked by cleanlab's label quality (the
    out-of-fold probability of the given label). Each {position, given, suggested, confident, label_quality,
    given_probability, suggested_probability, score} (class indices; score = 1 - quality)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    present = np.unique(labels)  # cleanlab wants every column a class that occurs: drop the absent ones
    if len(present) < 2:
        return []
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(1, keepdims=True), 1e-12, None)
    y = remap[labels]
    quality = get_label_quality_scores(y, sub, method="self_confidence")
    flagged = {int(i) for i in np.nonzero(find_label_issues(y, sub, filter_by=filter_by, n_jobs=1))[0]}  # a mask
    disagree = {int(i) for i in np.nonzero(sub.argmax(1) != y)[0]}
    rows = []
    for i in sorted(flagged | disagree, key=lambda i: (quality[i], i)):
        order = np.argsort(-sub[i])
        best = int(order[0] if order[0] != y[i] else order[1])
        rows.append({"position": i, "given": int(labels[i]), "suggested": int(present[best]), "confident": i in flagged,
                     "label_quality": float(quality[i]), "given_probability": float(sub[i, y[i]]),
                     "suggested_probability": float(sub[i, best]), "score": float(1.0 - quality[i])})
    return rows


def outliers(x: np.ndarray, *, neighbours: int = OUTLIER_NEIGHBOURS,
             threshold: float = OUTLIER_THRESHOLD) -> tuple[list[dict], float | None]:
    """Items unlike any other (cleanlab's OutOfDistribution on the features), most unusual first:
    ({position, score (0..1, lower = more unusual), distance (mean cosine distance to the nearest neighbours)}),
    the distance above which an item is flagged)."""
    from cleanlab.outlier import OutOfDistribution

    if len(x) < 3:
        return [], None
    k = min(neighbours, len(x) - 1)
    ood = OutOfDistribution(params={"k": k})
    scores = ood.fit_score(features=x.astype(np.float64), verbose=False)
    distance = -np.log(np.clip(scores, 1e-300, 1.0)) * ood.params["scaling_factor"]  # score = exp(-d / scale)
    q1, q3 = np.percentile(distance, [25, 75])
    limit = float(q3 + (1.0 / threshold - 1.0) * (q3 - q1))
    flagged = np.nonzero(distance > limit)[0]
    flagged = flagged[np.argsort(scores[flagged], kind="stable")]
    return [{"position": int(i), "score": float(scores[i]), "distance": float(distance[i])} for i in flagged], limit


def label_conflicts(x: np.ndarray, labels: np.ndarray, *, similarity: float = SIMILARITY, block: int = 2048,
                    limit: int = MAX_CONFLICTS) -> list[dict]:
    """Pairs (a < b) of near-identical features with different labels, most similar first."""
    unit = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    pairs = []
    for start in range(0, len(unit), block):
        sims = unit[start:start + block] @ unit.T
        rows, cols = np.nonzero(sims >= similarity)
        rows = rows + start
        keep = (rows < cols) & (labels[rows] != labels[cols])
        pairs += [(float(sims[r - start, c]), int(r), int(c)) for r, c in zip(rows[keep], cols[keep], strict=True)]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [{"a": a, "b": b, "similarity": s} for s, a, b in pairs[:limit]]


# ----------------------------------------------------------------------------- the command

def find_issues(dataset: str, *, workspace: Workspace, engine: Engine, run: str | None = None, model: str | None = None,
                size: int | None = None, version: int | None = None, folds: int = FOLDS, similarity: float = SIMILARITY,
                seed: int = 0, device: str = "auto", workers: int = 1, html: Path | None = None,
                progress: Progress | None = None) -> dict:
    """Everything `snapid data issues` reports, as one JSON-ready dict; with ``html`` the gallery is written too."""
    started = time.monotonic()
    feats = compute_features(dataset, workspace=workspace, engine=engine, run=run, model=model, size=size,
                             version=version, device=device, workers=workers, progress=progress)
    featured = time.monotonic()
    n_classes = len(feats.classes)
    with one_thread():
        probs, weight_decay = out_of_fold(feats.x, feats.labels, n_classes, folds=folds, seed=seed)
    suspects = label_issues(feats.labels, probs)
    unusual, limit = outliers(feats.x)
    pairs = label_conflicts(feats.x, feats.labels, similarity=similarity)
    result = {
        **feats.source, "images": len(feats.labels), "classes": n_classes,
        "folds": int(min(max(folds, 2), len(feats.labels))), "weight_decay": weight_decay,
        "out_of_fold_top1": float((probs.argmax(1) == feats.labels).mean()),
        "thresholds": {"similarity": similarity, "outlier_distance": limit},
        "label_issues": [_issue(feats, rank, row) for rank, row in enumerate(suspects, 1)],
        "outliers": [{"rank": rank, **_item(feats, row["position"]), "score": row["score"], "distance": row["distance"]}
                     for rank, row in enumerate(unusual, 1)],
        "conflicts": [{"similarity": p["similarity"], "a": _item(feats, p["a"]), "b": _item(feats, p["b"])}
                      for p in pairs],
        "seconds": {"features": round(featured - started, 1), "analysis": round(time.monotonic() - featured, 1)},
    }
    if html is not None:
        from snapid.evaluate.issues_report import write_issues_html

        write_issues_html(result, Path(html), thumbnails=_thumbnails(feats, suspects, unusual, pairs))
        result["html"] = str(html)
    return result


def _item(feats: Features, i: int) -> dict:
    c = feats.classes[int(feats.labels[i])]
    return {"path": feats.paths[i], "box": feats.boxes[i], "split": feats.splits[i], "label": c["id"],
            "label_name": c["name"], "item": int(i)}


def _issue(feats: Features, rank: int, row: dict) -> dict:
    item = _item(feats, row["position"])
    suggested = feats.classes[row["suggested"]]
    return {"rank": rank, **{k: item[k] for k in ("path", "box", "split", "item")}, "given": item["label"],
            "given_name": item["label_name"], "suggested": suggested["id"], "suggested_name": suggested["name"],
            **{k: row[k] for k in ("confident", "score", "label_quality", "given_probability",
                                   "suggested_probability")}}


def _thumbnails(feats: Features, suspects, unusual, pairs, limit: int | None = None) -> dict[int, str]:
    """item → a small JPEG data: URI, for the items the gallery shows."""
    from snapid.evaluate.evaluation import thumbnail_data_uri
    from snapid.evaluate.issues_report import MAX_SHOWN

    limit = limit or MAX_SHOWN
    wanted = [r["position"] for r in suspects[:limit]] + [r["position"] for r in unusual[:limit]]
    wanted += [i for p in pairs[:limit] for i in (p["a"], p["b"])]
    out = {}
    for i in dict.fromkeys(wanted):
        pixels = feats.dataset[int(feats.positions[i])][0].permute(1, 2, 0).numpy()
        out[int(i)] = thumbnail_data_uri(pixels)
    return out
