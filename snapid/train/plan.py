"""The recipe a time budget buys on this machine: backbone, input size, probe views, fine-tuning epochs.

Candidates are ranked by the accuracy they reached on real fine-grained photos (birds100, table in
docs/decisions.md); the planner measures each candidate backbone's feature speed here, estimates the
run's time from the dataset's size, and takes the most accurate candidate that fits. Options the user
set are kept as given: the plan only fills in what was left to it ("auto" model, no probe_views,
no fine-tuning epochs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from snapid.models import factory, registry
from snapid.train.budget import format_seconds, images_per_second, parse_budget
from snapid.train.config import TrainConfig

# most accurate first: (model, probe views); measured test top-1 on birds100 in docs/decisions.md
CANDIDATES = (
    ("efficientnet_lite2+mobilenet_v2", 2),
    ("efficientnet_lite2+mobilenet_v2", 1),  # 0.907: above Lite2 with a mirrored view (0.904), and no slower
    ("efficientnet_lite2", 2),
    ("efficientnet_lite2", 1),
    ("mobilenet_v2", 2),
    ("mobilenet_v2", 1),
)
FALLBACK = "mobilenet_v2"
START_S = 10.0  # loading the backbone, the database, the first batch
PREPARE_PER_IMAGE_S = 1 / 400  # decode + resize into the cache, 2 workers (skipped when the cache exists)
FINETUNE_COST = 3.0  # a training step (forward + backward, augmented) costs about 3 frozen forwards
# features from the cache (read, normalise, mirror) run at about 0.8 of the bare model's measured speed:
# birds100 measured 278 s against a 216 s estimate without it
PIPELINE_EFFICIENCY = 0.8
MAX_FINETUNE_EPOCHS = 10

Speed = Callable[[str, int], float]  # (model, size) → frozen-feature images/s here


@dataclass(frozen=True)
class Plan:
    model: str
    size: int
    views: int
    finetune_epochs: int
    seconds: float  # the estimate
    budget: float | None
    device: str

    def describe(self) -> str:
        views = {1: "1 view", 2: "2 views (clean + mirrored)"}.get(self.views, f"{self.views} views")
        tune = (f"fine-tune the top layers × {self.finetune_epochs} epochs" if self.finetune_epochs
                else "no fine-tuning" + (" (CPU)" if self.device == "cpu" else ""))
        budget = f" of a {format_seconds(self.budget)} budget" if self.budget else ""
        return (f"probe on {self.model} at {self.size} px, {views}; {tune}; "
                f"about {format_seconds(self.seconds)}{budget} on {self.device}")

    def as_dict(self) -> dict:
        return {"model": self.model, "size": self.size, "views": self.views, "finetune_epochs": self.finetune_epochs,
                "estimated_seconds": round(self.seconds, 1), "budget_seconds": self.budget, "device": self.device,
                "text": self.describe()}


def available(model: str) -> bool:
    """Pretrained weights for every part of MODEL are on this machine (no download)."""
    from snapid.models.weights import availability

    rows = {row["name"]: row["available"] for row in availability()}
    spec = registry.get_spec(model)
    names = registry.fused_parts(spec.name) if spec.family == "fused" else [spec.name]
    return all(rows.get(name, False) for name in names)


class MeasuredSpeed:
    """Frozen-feature images/s of a model at a size on this machine: each backbone part is built once and
    measured in rounds, keeping its best round (a busy moment of a shared machine reads as slow, never as fast).
    Callable as a Speed."""

    def __init__(self, device: torch.device, rounds: int = 1):
        self.device, self.rounds = device, rounds
        self._parts: dict[tuple[str, int], tuple[torch.nn.Module, float]] = {}

    def _part(self, name: str, size: int) -> float:
        from snapid.train.features import frozen_backbone

        if (name, size) not in self._parts:
            model = factory.create(name, 2, pretrained=False).eval().to(self.device, memory_format=torch.channels_last)
            backbone = frozen_backbone(model)
            self._parts[name, size] = backbone, self._rate(backbone, size, self.rounds)
        return self._parts[name, size][1]

    def _rate(self, backbone: torch.nn.Module, size: int, rounds: int) -> float:
        from snapid.train.features import fast_dtype

        return images_per_second(backbone, size, device=self.device, dtype=fast_dtype(self.device), rounds=rounds)

    def measure_more(self, rounds: int) -> None:
        """``rounds`` more rounds of every part measured so far (no rebuilding), each keeping its best."""
        for key, (backbone, best) in self._parts.items():
            self._parts[key] = backbone, max(best, self._rate(backbone, key[1], rounds))

    def release(self) -> None:
        """Drop the measured backbones (the rates stay)."""
        self._parts = {key: (None, rate) for key, (_, rate) in self._parts.items()}

    def __call__(self, model: str, size: int) -> float:
        spec = registry.get_spec(model)
        parts = registry.fused_parts(spec.name) if spec.family == "fused" else [spec.name]
        return 1.0 / sum(1.0 / self._part(p, size) for p in parts)


def estimate(*, views: int, finetune_epochs: int, counts: dict[str, int], speed: float) -> float:
    """Seconds for a run: start, prepare, features (views of train, val), fine-tuning, the test figure."""
    train, val, test = (counts.get(s, 0) for s in ("train", "val", "test"))
    speed *= PIPELINE_EFFICIENCY
    features = (train * views + val + test) / speed
    epochs = finetune_epochs * (train * FINETUNE_COST + val) / speed
    return START_S + sum(counts.values()) * PREPARE_PER_IMAGE_S + features + epochs


def plan_run(config: TrainConfig, *, counts: dict[str, int], device: torch.device,
             speed: Speed | None = None, is_available: Callable[[str], bool] = available,
             started: float | None = None) -> tuple[TrainConfig, Plan]:
    """The config with what was left to the plan filled in, and the plan (to print before training).
    ``started``: when the run's clock started (time.monotonic()); what went before the plan, measuring included,
    comes out of the budget."""
    budget = parse_budget(config.budget) if config.budget else None
    ladder = _ladder(config, is_available)
    started = time.monotonic() if started is None else started
    if speed is None:
        # one quick round per backbone; only when that rules out the most accurate candidate do two more rounds
        # decide (the best of three), so that a busy moment of a shared machine does not shrink the plan
        meter = MeasuredSpeed(device, rounds=1)
        if _choose(ladder, config, counts, meter, budget)[0] != ladder[0]:
            meter.measure_more(rounds=2)
        meter.release()
        speed = meter
    left = None if budget is None else max(budget - (time.monotonic() - started), 1.0)
    (model, views), size, seconds = _choose(ladder, config, counts, speed, left)
    epochs = config.finetune_epochs
    if epochs is None:
        epochs = 0
        if device.type == "cuda":  # what is left of the budget buys fine-tuning epochs (on a CPU: opt-in)
            per_epoch = estimate(views=0, finetune_epochs=1, counts=counts, speed=speed(model, size)) \
                - estimate(views=0, finetune_epochs=0, counts=counts, speed=speed(model, size))
            left = (left - seconds) if left else 5 * per_epoch
            epochs = max(0, min(MAX_FINETUNE_EPOCHS, int(0.9 * left / max(per_epoch, 1e-9))))
        seconds = estimate(views=views, finetune_epochs=epochs, counts=counts, speed=speed(model, size))
    plan = Plan(model, size, views, epochs, seconds, budget, device.type)
    planned = config.model_copy(update={"model": model, "probe_views": views, "finetune_epochs": epochs})
    return planned, plan


def _ladder(config: TrainConfig, is_available: Callable[[str], bool]) -> list[tuple[str, int]]:
    """The candidates (model, views) the user's options leave, most accurate first."""
    if config.model == "auto":
        ladder = [(m, v) for m, v in CANDIDATES if not config.pretrained or is_available(m)] or [(FALLBACK, 1)]
    else:
        ladder = [(config.model, 2), (config.model, 1)]
    if config.probe_views is not None:
        ladder = list(dict.fromkeys((m, config.probe_views) for m, _ in ladder))
    return ladder


def _choose(ladder: list[tuple[str, int]], config: TrainConfig, counts: dict[str, int], speed: Speed,
            budget: float | None) -> tuple[tuple[str, int], int, float]:
    """The first candidate whose estimate fits the budget, else the last (cheapest): ((model, views), size, s)."""
    for candidate in ladder:
        model, views = candidate
        size = config.size or registry.get_spec(model).input_size
        seconds = estimate(views=views, finetune_epochs=config.finetune_epochs or 0, counts=counts,
                           speed=speed(model, size))
        if budget is None or seconds <= budget:
            break
    return candidate, size, seconds


def needs_measuring(config: TrainConfig, device: torch.device) -> bool:
    """False when the user set everything the plan would choose (no time spent measuring)."""
    return config.model == "auto" or config.probe_views is None or \
        (config.finetune_epochs is None and device.type == "cuda")
