"""Benchmark: fine-tuning images/s at 224 on the CPU, the share of the machine's FP32 peak it uses,
and the augmentation's share of a training step.

One training step, as snapid's fine-tune loop does it (snapid.train.loop.train_epoch): a uint8
batch (random pixels, 32 x 3 x 224 x 224) → snapid.train.augment.build_augment(preset, 224, mean,
std) under no_grad → forward → cross-entropy → backward → AdamW step, with EVERY layer trainable
(model = snapid.models.factory.create(name, 12, pretrained=False)). --warmup untimed steps, then
--steps timed ones; the augmentation and the rest of the step are timed separately.

FLOPs: torch.utils.flop_counter.FlopCounterMode over one forward, and one forward + backward, of
the model (it counts the convolutions and matrix products, not batch norm, activations or the
optimizer), with a group-aware formula for the convolution backward (torch's ignores groups in the
weight gradient and counts depthwise layers ~C times too high). Achieved FLOP/s = (forward +
backward FLOPs per image) x images/s.

Peak: (a) measured, the best float32 torch.mm of 2048 x 2048 over several reps with the same
threads; (b) theoretical, cores x GHz (/proc/cpuinfo "cpu MHz") x FP32 FLOPs per cycle per core
(AVX2 + FMA: 2 x 256-bit FMA = 32; AVX-512 with two 512-bit FMA units = 64, but AMD Zen 4,
family 25, runs 512-bit ops on 256-bit units, so 32 there). The assumption is printed.

Augmentation share, per preset (none/light/medium/heavy): augment time / (augment time + the
model's forward/backward/step time), with the augment timed on its own over --aug-reps batches;
the issue's target is <= 25 % of a step.

    .venv/bin/python benchmarks/train_speed.py                    # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/train_speed.py --models mobilenet_v2 --steps 10 --channels-last   # diagnostic
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import machine_info, print_machine, print_table, snapid_commit, write_json  # noqa: E402

from snapid.models import factory, registry  # noqa: E402
from snapid.train.augment import PRESET_OPS, build_augment  # noqa: E402

SIZE = 224
CLASSES = 12
AUG_TARGET = 0.25


# ----------------------------------------------------------------------------- peak

def cpu_facts() -> dict:
    facts = {"vendor": "?", "family": None, "model": None, "mhz": None, "flags": set()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "vendor_id":
                facts["vendor"] = value
            elif key == "cpu family" and facts["family"] is None:
                facts["family"] = int(value)
            elif key == "model" and facts["model"] is None:
                facts["model"] = int(value)
            elif key == "cpu MHz" and facts["mhz"] is None:
                facts["mhz"] = float(value)
            elif key == "flags" and not facts["flags"]:
                facts["flags"] = set(value.split())
    except OSError:
        pass
    return facts


def theoretical_peak(cores: int, override: int | None) -> dict:
    f = cpu_facts()
    flags = f["flags"]
    if override:
        per_cycle, why = override, "given with --flops-per-cycle"
    elif "avx512f" in flags and f["vendor"] == "AuthenticAMD" and f["family"] == 25:
        per_cycle = 32
        why = ("AVX-512 present, but this is AMD family 25 (Zen 4), which runs 512-bit ops on two 256-bit FMA pipes: "
               "2 x 8 lanes x 2 = 32 FP32 FLOPs/cycle/core (the plain AVX-512 rule, 64, would halve every fraction)")
    elif "avx512f" in flags:
        per_cycle, why = 64, "AVX-512: 2 x 512-bit FMA = 2 x 16 lanes x 2 = 64 FP32 FLOPs/cycle/core"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "AVX2 + FMA: 2 x 256-bit FMA = 32 FP32 FLOPs/cycle/core"
    else:
        per_cycle, why = 16, "no FMA: SSE/AVX adds + multiplies, 16 FP32 FLOPs/cycle/core"
    ghz = (f["mhz"] or 0.0) / 1000
    return {"cores": cores, "ghz": round(ghz, 3), "flops_per_cycle": per_cycle, "assumption": why,
            "gflops": round(cores * ghz * per_cycle, 1), "cpu_family": f["family"], "cpu_model": f["model"]}


def measured_peak(n: int = 2048, reps: int = 5, rounds: int = 3) -> float:
    """Best GFLOP/s of ``rounds`` x ``reps`` float32 n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - started) / 1e9)
    return best


# ----------------------------------------------------------------------------- model

def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **_) -> int:
    """Group-aware convolution backward: grad_input and grad_weight each cost what the forward conv costs.

    torch's own formula (torch.utils.flop_counter.conv_backward_flop) ignores ``groups`` in the weight
    gradient, which counts a depthwise conv's backward about C times too high (mobilenet_v2: 12.3 instead
    of 1.8 GFLOP per image)."""
    per_pass = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return per_pass * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(model: nn.Module, channels_last: bool) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image, counted on a batch of 2 in training mode."""
    x = torch.randn(2, 3, SIZE, SIZE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward = counter.get_total_flops() / 2
    with FlopCounterMode(display=False,
                         custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops() / 2


def time_training(name: str, batch: int, steps: int, warmup: int, preset: str, channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = factory.create(name, CLASSES, pretrained=False)
    model.unfreeze(None)  # every layer trainable
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    spec = registry.get_spec(name)
    augment = build_augment(preset, SIZE, spec.mean, spec.std).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen),
                torch.randint(0, CLASSES, (batch,), generator=gen)) for _ in range(4)]
    forward_flops, train_flops = count_flops(model, channels_last)
    aug_s, rest_s = [], []
    for k in range(warmup + steps):
        images, labels = batches[k % len(batches)]
        t0 = time.perf_counter()
        with torch.no_grad():
            x = augment(images)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        loss = loss_fn(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())
        t2 = time.perf_counter()
        if k >= warmup:
            aug_s.append(t1 - t0)
            rest_s.append(t2 - t1)
        print(f"  {name} step {k + 1}/{warmup + steps}{' (warm-up)' if k < warmup else ''}: "
              f"augment {1000 * (t1 - t0):.0f} ms, forward/backward/step {1000 * (t2 - t1):.0f} ms", flush=True)
    total = sum(aug_s) + sum(rest_s)
    return {"model": name, "channels_last": channels_last, "batch": batch, "steps": steps, "warmup": warmup,
            "preset": preset, "images_per_s": round(steps * batch / total, 3),
            "step_ms": round(1000 * total / steps, 1), "augment_ms": round(1000 * statistics.median(aug_s), 1),
            "model_ms": round(1000 * statistics.median(rest_s), 1),
            "augment_share_in_step": round(sum(aug_s) / total, 4),
            "forward_gflops_per_image": round(forward_flops / 1e9, 4),
            "train_gflops_per_image": round(train_flops / 1e9, 4),
            "parameters": sum(p.numel() for p in model.parameters())}


def time_augment(preset: str, batch: int, reps: int, mean, std) -> float:
    """Median seconds of one preset over one uint8 batch (after one untimed call)."""
    augment = build_augment(preset, SIZE, mean, std).train()
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)
    times = []
    with torch.no_grad():
        augment(images)
        for _ in range(reps):
            started = time.perf_counter()
            augment(images)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet18"], help="backbones (default both)")
    parser.add_argument("--batch", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--aug-reps", type=int, default=10, help="timed batches per augmentation preset (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--channels-last", action="store_true",
                        help="diagnostic: model and input in channels_last (snapid does this on CUDA only)")
    parser.add_argument("--flops-per-cycle", type=int,
                        help="override the FP32 FLOPs/cycle/core of the theoretical peak")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    info = machine_info()
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), commit=snapid_commit())
    cores = min(args.threads, len(os.sched_getaffinity(0)))
    theory = theoretical_peak(cores, args.flops_per_cycle)
    peak_before = measured_peak()
    print(f"peak: matmul 2048x2048 float32 {peak_before:.0f} GFLOP/s measured ({args.threads} threads); "
          f"theoretical {theory['gflops']:.0f} GFLOP/s = {cores} cores x {theory['ghz']:.2f} GHz x "
          f"{theory['flops_per_cycle']} FLOPs/cycle", flush=True)

    runs = []
    for name in args.models:
        print(f"{name}: fine-tune steps, batch {args.batch}, augment "
              f"medium{', channels_last' if args.channels_last else ''} ...",
              flush=True)
        runs.append(time_training(name, args.batch, args.steps, args.warmup, "medium", args.channels_last))
    spec = registry.get_spec(args.models[0])
    print(f"augmentation presets alone, batch {args.batch}, {args.aug_reps} reps each ...", flush=True)
    aug = {p: time_augment(p, args.batch, args.aug_reps, spec.mean, spec.std) for p in PRESET_OPS}
    peak_after = measured_peak()
    peak = max(peak_before, peak_after)

    print(f"\nfine-tuning at {SIZE}x{SIZE}, all layers trainable, batch {args.batch}, AdamW, augment medium, "
          f"{args.steps} timed steps after {args.warmup} warm-up; torch {torch.__version__} ({args.threads} threads)"
          f"{'; channels_last (diagnostic)' if args.channels_last else ''}")
    print(f"theoretical peak assumption: {theory['assumption']}; {theory['ghz']:.2f} GHz is /proc/cpuinfo's 'cpu MHz'")
    print(f"measured peak: best float32 torch.mm 2048x2048, {peak_before:.0f} GFLOP/s before, {peak_after:.0f} after "
          f"(the best, {peak:.0f}, is used)")
    print_machine(info)
    print(f"snapid at commit {info['commit']}")
    print()
    rows = []
    for r in runs:
        achieved = r["train_gflops_per_image"] * r["images_per_s"]
        r.update(achieved_gflops=round(achieved, 2), fraction_of_measured_peak=round(achieved / peak, 4),
                 fraction_of_theoretical_peak=round(achieved / theory["gflops"], 4) if theory["gflops"] else None)
        rows.append({"figure": f"{r['model']} fine-tune images/s", "value": f"{r['images_per_s']:.2f}/s",
                     "baseline": "-", "ratio": "-", "target": "informational", "met": None})
        rows.append({"figure": f"{r['model']} achieved FP32 (x {r['train_gflops_per_image']:.2f} GFLOP/image fwd+bwd)",
                     "value": f"{achieved:.1f} GFLOP/s",
                     "baseline": f"{peak:.0f} measured / {theory['gflops']:.0f} theoretical",
                     "ratio": f"{r['fraction_of_measured_peak']:.1%} / {r['fraction_of_theoretical_peak']:.1%}",
                     "target": "informational", "met": None})
    shares = {}
    for r in runs:
        model_s = r["model_ms"] / 1000
        shares[r["model"]] = {p: round(t / (t + model_s), 4) for p, t in aug.items()}
        for p, t in aug.items():
            share = t / (t + model_s)
            rows.append({"figure": f"augment '{p}' share of a {r['model']} step", "value": f"{share:.1%}",
                         "baseline": f"{1000 * t:.0f} ms of {1000 * (t + model_s):.0f} ms", "ratio": "-",
                         "target": f"<= {AUG_TARGET:.0%}", "met": share <= AUG_TARGET})
    print_table(rows)
    print()
    for r in runs:
        print(f"{r['model']}: {r['parameters'] / 1e6:.2f} M parameters, forward {r['forward_gflops_per_image']:.3f} "
              f"GFLOP/image (= {r['forward_gflops_per_image'] / 2:.3f} GMAC), forward+backward "
              f"{r['train_gflops_per_image']:.3f}; step {r['step_ms']:.0f} ms (median augment {r['augment_ms']:.0f} "
              f"ms, model {r['model_ms']:.0f} ms; augment measured inside the step: {r['augment_share_in_step']:.1%})")
    write_json(args.json, {"benchmark": "train_speed", "machine": info, "theoretical_peak": theory,
                           "measured_peak_gflops": round(peak, 1), "measured_peak_before": round(peak_before, 1),
                           "measured_peak_after": round(peak_after, 1), "runs": runs,
                           "augment_seconds": {p: round(t, 4) for p, t in aug.items()}, "augment_share": shares,
                           "augment_target": AUG_TARGET})
    return 0


if __name__ == "__main__":
    sys.exit(main())
