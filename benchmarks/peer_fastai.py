"""Benchmark: snapid's default recipe against fastai's, given the same wall time, on real photo sets.

Peer: fastai's own recipe for a new image task, `vision_learner(dls, mobilenet_v2).fine_tune(n)`:
ImageDataLoaders.from_folder over the train split (10 % held out for fastai's validation, as snapid
carves its val split), Resize(224) per item, `aug_transforms()` per batch, batch 64, the learning rate
fastai uses by default (2e-3), torchvision's MobileNetV2 IMAGENET1K_V1 weights from the same offline
file snapid uses. fine_tune needs at least one unfrozen epoch, so on a slow machine fastai may take longer
than snapid's time: both times are printed. fine_tune(n) is one frozen epoch then n unfrozen ones; n is
the largest that fits the time snapid's default run took (one frozen epoch is timed first, an unfrozen epoch costs about
--unfrozen-cost times it; the unfrozen epochs are written out as fastai's fine_tune does them, so they
can be counted against the clock). Both are scored on the test split.

snapid: `snapid data import` + `snapid train` with default options (its wall time is the budget given
to fastai), then again with `--budget` a third of fastai's time, to see whether snapid reaches fastai's
accuracy in at most a third of its time. Targets (issue 14): snapid more accurate in the same time;
fastai's accuracy reached in ≤ 1/3 of its time.

    pip install -e ".[bench]"                            # fastai (benchmark only)
    .venv/bin/python benchmarks/peer_fastai.py           # birds100 and flowers12, ~25 min on 2 cores
    .venv/bin/python benchmarks/peer_fastai.py --sets flowers12 --json peer.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import mobilenet_v2_imagenet, photo_sets, scores, snapid_default  # noqa: E402

BATCH = 64
LR = 2e-3  # fastai's fine_tune default base_lr


def fastai_recipe(root: Path, seconds: float, unfrozen_cost: float) -> dict:
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, get_image_files, vision_learner
    from torchvision.models import mobilenet_v2

    mobilenet_v2_imagenet()  # the weights file in torch's hub cache, where torchvision (and so fastai) looks
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(root, train="train", valid_pct=0.1, seed=0, item_tfms=Resize(224),
                                       batch_tfms=aug_transforms(), bs=BATCH)  # fastai's default loader workers
    # torchvision's MobileNetV2 pools in forward(), so fastai's pooling-layer search finds no cut point: register
    # its body (`features`, everything but the classifier) as fastai's model_meta does for other torchvision models
    from fastai.vision.learner import _default_meta, model_meta
    from torchvision.models import MobileNet_V2_Weights

    model_meta[mobilenet_v2] = {**_default_meta, "cut": -1, "weights": MobileNet_V2_Weights.IMAGENET1K_V1}
    learn = vision_learner(dls, mobilenet_v2, metrics=accuracy, pretrained=True)
    # fine_tune(n): freeze, one cycle at base_lr; unfreeze, n cycles with lr slice(base_lr / 100, base_lr / 2)
    learn.freeze()
    frozen_start = time.perf_counter()
    learn.fit_one_cycle(1, slice(LR))
    frozen = time.perf_counter() - frozen_start
    left = seconds - (time.perf_counter() - start)
    epochs = max(1, math.floor(left / (frozen * unfrozen_cost)))
    learn.unfreeze()
    learn.fit_one_cycle(epochs, slice(LR / 100, LR / 2), pct_start=0.3, div=5.0)
    test_files = get_image_files(root / "test")
    test_dl = dls.test_dl(test_files, with_labels=True)
    probs, targets = learn.get_preds(dl=test_dl)
    seconds_used = time.perf_counter() - start
    return {**scores(probs.argmax(1).numpy(), targets.numpy(), len(dls.vocab)), "seconds": seconds_used,
            "epochs": f"fine_tune({epochs}): 1 frozen + {epochs} unfrozen"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="birds100,flowers12")
    parser.add_argument("--unfrozen-cost", type=float, default=2.5, help="An unfrozen epoch / a frozen one (time).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = {}
    for root in photo_sets(args.sets):
        name = root.name
        ours = snapid_default(root, name, [])
        print(f"{name}: snapid default  top-1 {ours['top1']:.3f}  {ours['seconds']:.0f} s  ({ours['plan']})",
              flush=True)
        peer = fastai_recipe(root, ours["seconds"], args.unfrozen_cost)
        print(f"{name}: fastai           top-1 {peer['top1']:.3f}  {peer['seconds']:.0f} s  ({peer['epochs']})",
              flush=True)
        third = snapid_default(root, name, ["--budget", f"{max(peer['seconds'] / 3, 1):.0f}s"])
        print(f"{name}: snapid, 1/3 of fastai's time  top-1 {third['top1']:.3f}  {third['seconds']:.0f} s  "
              f"({third['plan']})", flush=True)
        same_time = ours["top1"] > peer["top1"]
        a_third = third["top1"] >= peer["top1"] and third["seconds"] <= peer["seconds"] / 3 * 1.1
        print(f"{name}: more accurate in the same time: {'met' if same_time else 'MISSED'} "
              f"({(ours['top1'] - peer['top1']) * 100:+.1f} points); fastai's accuracy in ≤ 1/3 of its time: "
              f"{'met' if a_third else 'MISSED'} ({third['seconds'] / max(peer['seconds'], 1e-9):.2f} of its time)",
              flush=True)
        results[name] = {"snapid": ours, "fastai": peer, "snapid_third": third}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
