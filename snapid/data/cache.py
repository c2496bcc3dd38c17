"""`snapid data prepare`: decode every image once into uint8 shards that training memory-maps.

Layout, under the workspace's cache folder for one set of transform parameters:
  shard-<id>.npy        N x S x S x 3 uint8, written to a temp file, fsynced, then renamed
  shard-<id>.keys.json  the item keys of each row (and items that failed); written LAST, so a
                        shard without its keys file is an unfinished shard from a killed run
  index/<dataset>-v<version>.npz / .json   which shard row each sample of one manifest uses

Items are keyed by (sha256, box) and the folder by the transform parameters, so a second
prepare with the same parameters, or of a new version sharing most photos, does no work again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snapid import geometry, images
from snapid.data.manifest import Manifest, Sample
from snapid.errors import DatasetError, ImageError
from snapid.workspace import Workspace, atomic_write_json, exclusive_lock

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
CACHE_FORMAT = 1
FAILURE_LIMIT = 0.01  # above this share of failed items, prepare fails (the work done is kept)


@dataclass(frozen=True)
class PrepareParams:
    size: int = 224
    resize: str = "crop"        # "crop": short side then centre crop; "letterbox": pad to a square
    crop_boxes: bool = False    # one item per box, cut with padding (landmark / pill projects)
    pad: float = 0.1            # box padding, as a fraction of the box's longer side

    def key_dict(self) -> dict:
        return {"format": CACHE_FORMAT, **asdict(self)}


@dataclass(frozen=True)
class Item:
    key: str
    path: str
    width: int
    height: int
    box: tuple[float, float, float, float] | None


@dataclass
class PrepareReport:
    dataset: str
    version: int
    cache_dir: str
    items: int
    processed: int
    reused: int
    failed: dict[str, str] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plan_items(manifest: Manifest, params: PrepareParams) -> tuple[list[Item], list[tuple[Sample, int, str, str]]]:
    """Items to cache (unique by key), and each use: (sample, box index or -1, label, item key)."""
    items: dict[str, Item] = {}
    uses: list[tuple[Sample, int, str, str]] = []
    for s in manifest.samples:
        f = s.facts
        if not params.crop_boxes:
            if s.label is not None:
                items.setdefault(f.sha256, Item(f.sha256, s.path, f.width, f.height, None))
                uses.append((s, -1, s.label, f.sha256))
            continue
        for k, b in enumerate(s.boxes):
            label = b.label or s.label
            if label is None or b.area <= 0:
                continue
            region = geometry.padded_box((b.x1, b.y1, b.x2, b.y2), params.pad, f.width, f.height)
            key = f"{f.sha256}:" + ",".join(f"{v:.1f}" for v in region)
            items.setdefault(key, Item(key, s.path, f.width, f.height, region))
            uses.append((s, k, label, key))
    return list(items.values()), uses


def render_item(path: Path, item: Item, params: PrepareParams, limits: images.DecodeLimits) -> np.ndarray:
    """Decode (fast path), crop to the box, resize, by the rules of `snapid.geometry`: S x S x 3 uint8."""
    min_size = geometry.decode_size(item.width, item.height, item.box, params.size, params.resize)
    picture = images.decode_file(path, limits=limits, min_size=min_size)
    return geometry.cut_and_fit(picture, item.width, item.height, item.box, params.size, params.resize,
                                where=str(path))


def _write_shard(
    job: tuple[Path, str, list[Item], str, PrepareParams, images.DecodeLimits],
) -> tuple[str, int, dict[str, str]]:
    """Render one shard's items and write it atomically. Runs in a worker process."""
    folder, shard, items, root, params, limits = job
    s = params.size
    tmp = folder / f".{shard}.npy.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(items), s, s, 3))
    keys, failed = [], {}
    for item in items:
        try:
            out[len(keys)] = render_item(Path(root) / item.path, item, params, limits)
            keys.append(item.key)
        except (ImageError, OSError) as exc:
            failed[item.key] = f"{item.path}: {getattr(exc, 'message', None) or exc}"
    out.flush()
    del out
    if len(keys) < len(items):  # shrink the file to the rows actually written
        rows = np.load(tmp, mmap_mode="r")[: len(keys)].copy()
        _save_npy(tmp, rows)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, folder / f"{shard}.npy")
    atomic_write_json(folder / f"{shard}.keys.json", {"keys": keys, "failed": failed})
    return shard, len(keys), failed


def _save_npy(path: Path, rows: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, rows)


def existing_shards(folder: Path) -> tuple[dict[str, tuple[str, int]], dict[str, str]]:
    """key → (shard, row) for every finished shard, and key → reason for items that failed."""
    located: dict[str, tuple[str, int]] = {}
    failed: dict[str, str] = {}
    for keys_file in sorted(folder.glob("shard-*.keys.json")):
        shard = keys_file.name[: -len(".keys.json")]
        if not (folder / f"{shard}.npy").exists():
            continue
        record = json.loads(keys_file.read_text())
        for row, key in enumerate(record["keys"]):
            located.setdefault(key, (shard, row))
        failed.update(record.get("failed", {}))
    return located, failed


def _clean_unfinished(folder: Path) -> None:
    """Leftovers of a killed run: temp files, and shards whose keys file was never written."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for npy in folder.glob("shard-*.npy"):
        if not npy.with_name(npy.name[: -len(".npy")] + ".keys.json").exists():
            npy.unlink(missing_ok=True)


def prepare(
    manifest: Manifest,
    workspace: Workspace,
    params: PrepareParams,
    *,
    workers: int = 1,
    shard_size: int = 256,
    limits: images.DecodeLimits = images.DEFAULT_LIMITS,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    if params.resize not in geometry.RESIZE_MODES:
        raise DatasetError(f"--resize {params.resize!r}: expected 'crop' or 'letterbox'")
    if not 16 <= params.size <= 1024:
        raise DatasetError(f"--size {params.size}: expected 16 to 1024 pixels")
    if not 0 <= params.pad <= 2:
        raise DatasetError(f"--pad {params.pad}: expected a fraction between 0 and 2")
    folder = workspace.cache_dir(params.key_dict())
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / ".lock"):  # two prepares of one cache (two trainings at once) take turns
        return _prepare_locked(manifest, folder, params, workers, shard_size, limits, progress)


def _prepare_locked(manifest, folder, params, workers, shard_size, limits, progress) -> PrepareReport:
    atomic_write_json(folder / "params.json", params.key_dict())
    _clean_unfinished(folder)
    items, uses = plan_items(manifest, params)
    if not uses:
        what = "boxes with a label" if params.crop_boxes else "labelled images (try --crop boxes)"
        raise DatasetError(f"dataset {manifest.name!r} v{manifest.version} has no {what} to prepare")
    located, failed = existing_shards(folder)
    todo = [it for it in items if it.key not in located and it.key not in failed]
    jobs = []
    for start in range(0, len(todo), shard_size):
        chunk = todo[start:start + shard_size]
        shard = "shard-" + hashlib.sha256("\n".join(i.key for i in chunk).encode()).hexdigest()[:16]
        jobs.append((folder, shard, chunk, manifest.root, params, limits))
    done = 0
    if progress:
        progress(0, len(todo))
    runner = ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(jobs) > 1 else None
    try:
        outcomes = runner.map(_write_shard, jobs) if runner else map(_write_shard, jobs)
        for job, (_, _written, bad) in zip(jobs, outcomes, strict=True):
            done += len(job[2])
            failed.update(bad)
            if progress:
                progress(done, len(todo))
    finally:
        if runner:
            runner.shutdown(cancel_futures=True)
    located, failed = existing_shards(folder)
    return _write_index(manifest, folder, uses, items, located, failed, len(todo), params)


def _write_index(manifest, folder, uses, items, located, failed, processed, params) -> PrepareReport:
    """Map every use to its shard row; save the index for this manifest version atomically."""
    class_index = manifest.class_index()
    shards = sorted({located[key][0] for *_, key in uses if key in located})
    shard_no = {name: i for i, name in enumerate(shards)}
    rows, failures = [], {}
    for n, (s, k, label, key) in enumerate(uses):
        if key not in located:
            failures[s.path if k < 0 else f"{s.path}#box{k}"] = failed.get(key, "not prepared")
            continue
        shard, row = located[key]
        rows.append((shard_no[shard], row, class_index[label], SPLIT_CODES[s.split], n, k))
    total = len(uses)
    if failures and len(failures) > FAILURE_LIMIT * total:
        example = next(iter(failures.values()))
        raise DatasetError(f"{len(failures)} of {total} items could not be prepared "
                           f"(above {FAILURE_LIMIT:.0%}), e.g. {example}")
    table = np.array(rows, dtype=np.int64).reshape(-1, 6)
    index_dir = folder / "index"
    index_dir.mkdir(exist_ok=True)
    stem = f"{manifest.name}-v{manifest.version}"
    _atomic_npz(index_dir / f"{stem}.npz", shard=table[:, 0].astype(np.int32), row=table[:, 1].astype(np.int32),
                label=table[:, 2].astype(np.int32), split=table[:, 3].astype(np.int8),
                use=table[:, 4].astype(np.int32), box=table[:, 5].astype(np.int32))
    atomic_write_json(index_dir / f"{stem}.json", {
        "dataset": manifest.name, "version": manifest.version, "params": params.key_dict(), "shards": shards,
        "classes": [{"id": c.id, "name": c.name, "display_names": c.display_names} for c in manifest.classes],
        "failed": failures,
    })
    counts = {name: int((table[:, 3] == code).sum()) for name, code in SPLIT_CODES.items()}
    notes = [f"{len(failures)} items failed and were left out"] if failures else []
    return PrepareReport(dataset=manifest.name, version=manifest.version, cache_dir=str(folder), items=len(rows),
                         processed=processed, reused=len(items) - processed, failed=failures, splits=counts,
                         notes=notes)


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def index_path(workspace: Workspace, params: PrepareParams, name: str, version: int) -> Path:
    return workspace.cache_dir(params.key_dict()) / "index" / f"{name}-v{version}.json"
