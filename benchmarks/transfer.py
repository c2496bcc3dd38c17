"""Benchmark: wall time to a test top-1 of 95 % on flowers12, snapid's default recipe vs a naive one.

Data: ../shared/datasets/flowers12 (12 species, 60 train + 20 test photos each, 224x224 JPEGs).
With --phone-size every photo is first upscaled to 1936x1296 (2.5 MP, JPEG q90; the helper of
benchmarks/decode.py, cached under $TMPDIR/snapid-bench), because real users' photos are large.

snapid (the figure starts after `prepare`, "from a prepared dataset"): in a temporary workspace,
`import_dataset(workers=2)` (a val split is carved from 10 % of train: 648 train / 72 val /
240 test), `prepare(PrepareParams(size=224), workers=2)` (timed and printed separately), then
`snapid.train.fit.train(..., TrainConfig(model="mobilenet_v2"), workers=2)`: the default recipe on the
naive side's backbone (offline ImageNet weights, a probe phase on cached features with an L-BFGS head,
then fine-tuning, which by default runs on a GPU only) → the run summary's test_top1 and the wall time of train().

Naive baseline (like the original student projects): the same mobilenet_v2 and ImageNet weights
(snapid.models.factory.create, so they come from the offline package), backbone frozen, a new
linear head; torchvision ImageFolder over flowers12/train (all 720 photos) with Pillow decode +
RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize EVERY epoch, DataLoader(batch
32, shuffle, num_workers=2), Adam(lr 1e-3) on the head, the frozen backbone's forward every epoch;
after each epoch, test top-1 over flowers12/test (Resize 224 + CenterCrop 224). It stops at the
first epoch whose test top-1 is >= 95 %, or at --max-epochs / --max-minutes (then the ratio is
printed as ">=": the naive time spent over snapid's). Its clock starts at model creation and
includes the per-epoch test evaluation (the original projects evaluated every epoch); the time
without evaluation is printed too.

Both sides use 2 intra-op threads (the machine has 2 cores) and run one after the other.

    .venv/bin/python benchmarks/transfer.py                 # 224x224 photos as shipped (~4 min on 2 cores)
    .venv/bin/python benchmarks/transfer.py --phone-size    # 2.5 MP photos (~4 min; first run makes them)
    .venv/bin/python benchmarks/transfer.py --side snapid --set probe_views=1 --json t.json   # diagnostic
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kornia.augmentation  # noqa: E402,F401  (libraries load outside both clocks, as torchvision does for the naive side)
from decode import (  # noqa: E402
    DEFAULT_CACHE,
    FLOWERS,
    PHOTO_SIZE,
    _source_files,
    link_or_copy,
    machine_info,
    make_photos,
    print_machine,
    print_table,
    snapid_commit,
    write_json,
)

from snapid.data.cache import PrepareParams, prepare  # noqa: E402
from snapid.importer import import_dataset  # noqa: E402
from snapid.models import factory, registry  # noqa: E402
from snapid.track import datasets as dataset_store  # noqa: E402
from snapid.track.db import get_engine, transaction  # noqa: E402
from snapid.train.config import TrainConfig  # noqa: E402
from snapid.train.fit import train  # noqa: E402
from snapid.train.progress import Reporter  # noqa: E402
from snapid.workspace import Workspace  # noqa: E402

SIZE = 224
TARGET_TOP1 = 0.95
TARGET_SECONDS = 180.0
TARGET_RATIO = 10.0


def matmul_gflops(reps: int = 5, n: int = 2048) -> float:
    """How fast the (shared, noisy) machine is right now: float32 n x n matmul GFLOP/s."""
    a = torch.randn(n, n)
    torch.mm(a, a)
    started = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, a)
    return reps * 2 * n ** 3 / (time.perf_counter() - started) / 1e9


class Timeline(Reporter):
    """Prints each training phase and epoch with the seconds since train() started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: list[tuple[str, float]] = []
        self.epochs: list[dict] = []

    def now(self) -> float:
        return time.perf_counter() - self.start

    def phase(self, title: str, total: int) -> None:
        self.phases.append((title, round(self.now(), 2)))
        print(f"  [{self.now():6.1f} s] {title}", flush=True)

    def epoch(self, record: dict) -> None:
        self.epochs.append({k: record.get(k) for k in ("epoch", "phase", "top1", "val_loss", "seconds",
                                                       "images_per_s")})
        if record["phase"] == "finetune" or record["epoch"] % 10 == 9:
            print(f"  [{self.now():6.1f} s] {record['phase']} epoch {record['epoch']}: val top-1 {record['top1']:.3f}, "
                  f"{record['seconds']:.1f} s, {record['images_per_s']:.1f} images/s", flush=True)

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)


def phone_tree(dest: Path, cache_dir: Path, workers: int, grain: float) -> Path:
    """flowers12 at 2.5 MP as ``dest/{train,test}/<class>/<name>.jpg`` (hard links into the photo cache)."""
    n = len(_source_files(FLOWERS))
    folder = make_photos(n, cache_dir, workers=workers, grain=grain)
    for cls, src in _source_files(FLOWERS):
        split = src.parent.parent.name
        photo = folder / cls / f"{split}_{src.name}"
        link_or_copy(photo, dest / split / cls / src.name)
    return dest


# ----------------------------------------------------------------------------- snapid

BACKBONE = {"model": "mobilenet_v2"}


def run_snapid(root: Path, tmp: Path, workers: int, overrides: dict) -> dict:
    ws = Workspace.at(tmp / "home")
    engine = get_engine(f"sqlite:///{ws.database}")
    print("snapid: import ...", flush=True)
    started = time.perf_counter()
    report = import_dataset(root, name="flowers", engine=engine, workers=workers)
    import_s = time.perf_counter() - started
    with transaction(engine) as session:
        manifest = dataset_store.load_manifest(session, name="flowers")
    splits = {s: sum(1 for x in manifest.samples if x.split == s) for s in ("train", "val", "test")}
    print(f"  {import_s:.1f} s, version {report.version}, splits {splits}", flush=True)
    print("snapid: prepare ...", flush=True)
    started = time.perf_counter()
    prepared = prepare(manifest, ws, PrepareParams(size=SIZE), workers=workers)
    prepare_s = time.perf_counter() - started
    print(f"  {prepare_s:.1f} s ({prepared.processed} processed, {prepared.reused} reused)", flush=True)

    # the naive side's backbone: the pipeline is compared, not backbones (the default `model: auto` plans a
    # fused Lite2 + MobileNetV2 run, 0.992 on flowers12 in 55 s: benchmarks/accuracy.py)
    config = TrainConfig(**{**BACKBONE, **overrides})
    finetune = "auto (0 on a CPU, 5 on a GPU)" if config.finetune_epochs is None else config.finetune_epochs
    which = f"TrainConfig with {overrides} (NOT the default)" if overrides else "default TrainConfig"
    print(f"snapid: train, {which} (model {config.model}, probe {config.probe_epochs} epochs x "
          f"{config.probe_views} views, fine-tune {finetune} epochs, unfreeze {config.unfreeze}, "
          f"batch {config.batch_size}, augment {config.augment}) ...", flush=True)
    timeline = Timeline()
    started = time.perf_counter()
    summary = train("flowers", config, workspace=ws, engine=engine, workers=workers, reporter=timeline)
    train_s = time.perf_counter() - started
    engine.dispose()
    ran = {p: sum(1 for e in timeline.epochs if e["phase"] == p) for p in ("probe", "finetune")}
    print(f"  {train_s:.1f} s, test top-1 {summary.get('test_top1', float('nan')):.4f} "
          f"(best epoch {summary['best_epoch']}, val top-1 {summary['val_top1']:.4f}; "
          f"{ran['probe']} probe + {ran['finetune']} fine-tune epochs ran)", flush=True)
    return {"import_seconds": round(import_s, 2), "prepare_seconds": round(prepare_s, 2),
            "prepare_processed": prepared.processed, "splits": splits, "train_seconds": round(train_s, 2),
            "test_top1": summary.get("test_top1"), "val_top1": summary.get("val_top1"),
            "best_epoch": summary.get("best_epoch"), "config": config.public(), "overrides": overrides,
            "finetune_epochs_run": sum(1 for e in timeline.epochs if e["phase"] == "finetune"),
            "phases": timeline.phases, "epochs": timeline.epochs}


# ----------------------------------------------------------------------------- naive

def naive_loaders(root: Path, workers: int, batch: int) -> tuple[DataLoader, DataLoader]:
    from torchvision import datasets, transforms

    spec = registry.get_spec("mobilenet_v2")
    norm = transforms.Normalize(spec.mean, spec.std)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(SIZE), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), norm])
    test_tf = transforms.Compose([transforms.Resize(SIZE), transforms.CenterCrop(SIZE), transforms.ToTensor(), norm])
    train_set = datasets.ImageFolder(str(root / "train"), transform=train_tf)
    test_set = datasets.ImageFolder(str(root / "test"), transform=test_tf)
    assert train_set.classes == test_set.classes
    return (DataLoader(train_set, batch_size=batch, shuffle=True, num_workers=workers),
            DataLoader(test_set, batch_size=batch, shuffle=False, num_workers=workers))


def run_naive(root: Path, workers: int, batch: int, lr: float, max_epochs: int, max_minutes: float, seed: int) -> dict:
    torch.use_deterministic_algorithms(False)  # snapid's train() switches it on for CPU runs
    torch.manual_seed(seed)
    print(f"naive: frozen mobilenet_v2 + linear head, Pillow decode every epoch, batch {batch}, "
          f"num_workers={workers}, Adam lr {lr:g}, up to {max_epochs} epochs / {max_minutes:g} min ...", flush=True)
    started = time.perf_counter()
    train_loader, test_loader = naive_loaders(root, workers, batch)
    model = factory.create("mobilenet_v2", len(train_loader.dataset.classes))  # offline ImageNet weights
    model.freeze_backbone()
    optimizer = torch.optim.Adam(model.head.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history, eval_s, reached = [], 0.0, None
    for epoch in range(max_epochs):
        model.train()
        seen = 0
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        eval_started = time.perf_counter()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        eval_s += time.perf_counter() - eval_started
        top1 = correct / total
        elapsed = time.perf_counter() - started
        history.append({"epoch": epoch + 1, "test_top1": round(top1, 4), "seconds": round(elapsed, 2)})
        print(f"  [{elapsed:6.1f} s] epoch {epoch + 1}: test top-1 {top1:.4f} (train images {seen})", flush=True)
        if top1 >= TARGET_TOP1:
            reached = elapsed
            break
        if elapsed > max_minutes * 60:
            print(f"  stopped: over --max-minutes {max_minutes:g}", flush=True)
            break
    spent = time.perf_counter() - started
    best = max(h["test_top1"] for h in history)
    return {"reached_seconds": None if reached is None else round(reached, 2), "spent_seconds": round(spent, 2),
            "eval_seconds": round(eval_s, 2), "epochs": len(history), "best_test_top1": best, "history": history,
            "batch": batch, "lr": lr, "workers": workers, "max_epochs": max_epochs, "max_minutes": max_minutes}


# ----------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phone-size", action="store_true", help="upscale every photo to 1936x1296 (2.5 MP) first")
    parser.add_argument("--grain", type=float, default=0.0,
                        help="noise for the upscaled photos (see decode.py; default 0)")
    parser.add_argument("--side", choices=("both", "snapid", "naive"), default="both", help="which side(s) to run")
    parser.add_argument("--workers", type=int, default=2, help="import/prepare/DataLoader workers (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="naive batch size (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="naive Adam learning rate (default 1e-3)")
    parser.add_argument("--max-epochs", type=int, default=15, help="naive epoch cap (default 15)")
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="naive time cap: no new epoch after this many minutes (default 20)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"photo cache (default {DEFAULT_CACHE})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="diagnostic: override a TrainConfig option (YAML value), e.g. --set probe_views=1; "
                             "the figure is then NOT the default recipe's")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        TrainConfig(**overrides)  # fail now, not after the import
    except ValueError as exc:
        if hasattr(exc, "errors"):
            parser.error(f"--set: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        parser.error(str(exc))

    torch.set_num_threads(args.threads)
    info = machine_info()
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), commit=snapid_commit())
    if not FLOWERS.is_dir():
        sys.exit(f"{FLOWERS}: the flowers12 data set is missing (expected ../shared/datasets/flowers12)")
    gflops_before = matmul_gflops()
    print(f"machine speed now: float32 matmul 2048x2048 at {gflops_before:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads)",
          flush=True)
    result: dict = {"benchmark": "transfer", "machine": info, "phone_size": args.phone_size, "grain": args.grain,
                    "matmul_gflops_before": round(gflops_before, 1)}
    with tempfile.TemporaryDirectory(prefix="snapid-bench-transfer-") as tmp_name:
        tmp = Path(tmp_name)
        root = phone_tree(tmp / "photos", args.cache_dir, args.workers, args.grain) if args.phone_size else FLOWERS
        photo = f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} (2.5 MP) upscaled" if args.phone_size else "224x224 as shipped"
        if args.side in ("both", "snapid"):
            result["snapid"] = run_snapid(root, tmp, args.workers, overrides)
        if args.side == "both":
            result["matmul_gflops_between"] = round(matmul_gflops(), 1)
            print(f"machine speed now: matmul {result['matmul_gflops_between']:.0f} GFLOP/s", flush=True)
        if args.side in ("both", "naive"):
            result["naive"] = run_naive(root, args.workers, args.batch, args.lr, args.max_epochs, args.max_minutes,
                                        seed=0)
    gflops_after = matmul_gflops()
    result["matmul_gflops_after"] = round(gflops_after, 1)

    print(f"\nflowers12 ({photo} photos), time to test top-1 >= {TARGET_TOP1:.0%}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"machine speed (float32 matmul 2048x2048): {gflops_before:.0f} GFLOP/s before"
          + (f", {result['matmul_gflops_between']:.0f} between the sides" if "matmul_gflops_between" in result else "")
          + f", {gflops_after:.0f} after; this shared machine's speed drifts, so compare sides run close together")
    print_machine(info)
    print(f"snapid at commit {info['commit']}")
    print()
    rows = []
    s, n = result.get("snapid"), result.get("naive")
    recipe = "snapid default recipe" if not overrides else f"snapid recipe with {', '.join(args.set)} (NOT default)"
    if s:
        ok = (s["test_top1"] or 0) >= TARGET_TOP1 and s["train_seconds"] <= TARGET_SECONDS
        rows.append({"figure": f"{recipe}: train() wall time", "value": f"{s['train_seconds']:.0f} s",
                     "baseline": "-", "ratio": "-", "target": f"<= {TARGET_SECONDS:.0f} s",
                     "met": s["train_seconds"] <= TARGET_SECONDS})
        rows.append({"figure": f"{recipe}: test top-1", "value": f"{s['test_top1']:.4f}",
                     "baseline": "-", "ratio": "-", "target": f">= {TARGET_TOP1}",
                     "met": (s["test_top1"] or 0) >= TARGET_TOP1})
        rows.append({"figure": "snapid one-time import + prepare (outside the figure)",
                     "value": f"{s['import_seconds']:.1f} + {s['prepare_seconds']:.1f} s", "baseline": "-",
                     "ratio": "-", "target": "informational", "met": None})
        result["target_met"] = ok
    if n:
        naive_s = n["reached_seconds"] if n["reached_seconds"] is not None else n["spent_seconds"]
        prefix = "" if n["reached_seconds"] is not None else ">= "
        label = (f"{naive_s:.0f} s to {TARGET_TOP1:.0%} ({n['epochs']} epochs)" if n["reached_seconds"] is not None else
                 f"never reached {TARGET_TOP1:.0%}: best {n['best_test_top1']:.4f} in {n['epochs']} epochs, "
                 f"{naive_s:.0f} s")
        rows.append({"figure": "naive recipe (frozen backbone, Pillow every epoch)", "value": label,
                     "baseline": "-", "ratio": "-", "target": "informational", "met": None})
    if s and n:
        ratio = naive_s / s["train_seconds"]
        snap_ok = (s["test_top1"] or 0) >= TARGET_TOP1
        figure = "time to 95 % top-1: naive / snapid" if snap_ok else \
            "naive time to 95 % / snapid time (snapid ended BELOW 95 %)"
        rows.append({"figure": figure, "value": f"{s['train_seconds']:.0f} s (snapid)",
                     "baseline": f"{prefix}{naive_s:.0f} s (naive)", "ratio": f"{prefix}{ratio:.2f}x",
                     "target": f">= {TARGET_RATIO:g}x", "met": snap_ok and ratio >= TARGET_RATIO})
        result.update(ratio=round(ratio, 3), ratio_is_lower_bound=bool(prefix), target_ratio=TARGET_RATIO)
    print_table(rows)
    if n:
        print(f"\nnaive: {n['eval_seconds']:.0f} s of its {n['spent_seconds']:.0f} s went to the per-epoch test "
              f"evaluation; test top-1 by epoch: {', '.join(str(h['test_top1']) for h in n['history'])}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
