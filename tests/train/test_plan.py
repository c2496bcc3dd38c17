"""The time-budget planner: a plan fits its budget on the measured speed, user options are kept, a tiny
budget still gives a valid run, and the run follows its plan."""

from __future__ import annotations

import time

import pytest
import torch

from snapid.errors import SnapidError
from snapid.train.budget import parse_budget
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.train.plan import CANDIDATES, MeasuredSpeed, estimate, needs_measuring, plan_run
from tests.helpers import TINY_TRAIN

CPU = torch.device("cpu")
BIRDS = {"train": 2611, "val": 292, "test": 2999}
# frozen-feature images/s measured on this 2-core VM (docs/decisions.md): Lite2 at 260 px, MobileNetV2
SPEEDS = {"efficientnet_lite2": 85.0, "mobilenet_v2": 160.0}


def speed(model: str, size: int) -> float:
    parts = model.split("+")
    return 1.0 / sum(1.0 / SPEEDS[p] for p in parts)


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2.5m", 150), ("45", 45)])
def test_budgets_are_read_as_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "0", "-5m", "m"])
def test_bad_budgets_are_refused_by_value(text):
    with pytest.raises(SnapidError, match="budget"):
        parse_budget(text)


def test_the_default_budget_buys_the_most_accurate_recipe_that_fits():
    config, plan = plan_run(TrainConfig(), counts=BIRDS, device=CPU, speed=speed, is_available=lambda m: True)
    assert (plan.model, plan.views) == CANDIDATES[0] and plan.seconds <= 600
    assert config.model == plan.model and config.probe_views == 2 and config.finetune_epochs == 0
    assert "probe on efficientnet_lite2+mobilenet_v2 at 260 px, 2 views" in plan.describe()


@pytest.mark.parametrize("budget", ["5m", "3m", "2m", "90s"])
def test_a_plan_fits_its_budget_when_any_candidate_can(budget):
    _, plan = plan_run(TrainConfig(budget=budget), counts=BIRDS, device=CPU, speed=speed, is_available=lambda m: True)
    cheapest = estimate(views=1, finetune_epochs=0, counts=BIRDS, speed=speed("mobilenet_v2", 224))
    assert plan.seconds <= parse_budget(budget) or (plan.model, plan.views) == ("mobilenet_v2", 1)
    assert plan.seconds <= parse_budget(budget) or plan.seconds == pytest.approx(cheapest)


def test_a_tiny_budget_takes_the_cheapest_candidate():
    _, plan = plan_run(TrainConfig(budget="1s"), counts=BIRDS, device=CPU, speed=speed, is_available=lambda m: True)
    assert (plan.model, plan.views) == CANDIDATES[-1]


def test_only_backbones_whose_weights_are_here_are_planned():
    _, plan = plan_run(TrainConfig(), counts=BIRDS, device=CPU, speed=speed, is_available=lambda m: "lite" not in m)
    assert plan.model == "mobilenet_v2"


def test_what_the_user_set_is_kept():
    config, plan = plan_run(TrainConfig(model="mobilenet_v2", probe_views=3, finetune_epochs=2), counts=BIRDS,
                            device=CPU, speed=speed)
    assert (config.model, config.probe_views, config.finetune_epochs) == ("mobilenet_v2", 3, 2)
    assert plan.finetune_epochs == 2
    assert not needs_measuring(config, CPU)


def test_a_gpu_budget_buys_fine_tuning_epochs():
    fast = {"efficientnet_lite2": 2000.0, "mobilenet_v2": 4000.0}
    _, plan = plan_run(TrainConfig(), counts=BIRDS, device=torch.device("cuda"),
                       speed=lambda m, s: 1.0 / sum(1.0 / fast[p] for p in m.split("+")), is_available=lambda m: True)
    assert plan.finetune_epochs >= 3 and plan.seconds <= 600


def test_time_spent_before_the_plan_comes_out_of_the_budget():
    """Measuring (and whatever ran since the run's clock started) counts: a recipe that fits 12 s from a standing
    start no longer fits when 5 s of the 12 are gone."""
    small, fast = {"train": 100, "val": 10, "test": 10}, (lambda m, s: 1e6)
    assert estimate(views=2, finetune_epochs=0, counts=small, speed=1e6) < 12
    _, fresh = plan_run(TrainConfig(budget="12s"), counts=small, device=CPU, speed=fast, is_available=lambda m: True)
    _, late = plan_run(TrainConfig(budget="12s"), counts=small, device=CPU, speed=fast, is_available=lambda m: True,
                       started=time.monotonic() - 5)
    assert (fresh.model, fresh.views) == CANDIDATES[0] and (late.model, late.views) == CANDIDATES[-1]
    assert late.budget == 12  # the plan still names the budget the user gave


def test_measured_speed_builds_each_backbone_once_and_keeps_its_best_round():
    meter = MeasuredSpeed(CPU)
    first = meter("mobilenet_v2", 32)
    backbone = meter._parts["mobilenet_v2", 32][0]
    meter.measure_more(rounds=1)
    assert meter._parts["mobilenet_v2", 32][0] is backbone  # measured again, not rebuilt
    assert meter("mobilenet_v2", 32) >= first > 0
    meter.release()
    assert meter._parts["mobilenet_v2", 32][0] is None and meter("mobilenet_v2", 32) >= first


def test_a_tiny_budget_still_gives_a_valid_run(shapes, home, engine):
    """A planned run (model auto → the cheapest candidate under a 1 s budget) completes with a test figure."""
    config = TrainConfig(**{**TINY_TRAIN, "model": "auto", "probe_views": None, "size": 32, "budget": "1s",
                            "probe_solver": "auto"})
    summary = train(shapes, config, workspace=home, engine=engine, name="tiny-budget")
    assert summary["plan"].startswith("probe on mobilenet_v2 at 32 px, 1 view")  # the dashboard shows it as "plan: …"
    assert 0 <= summary["test_top1"] <= 1 and summary["best_epoch"] >= 0


def test_the_default_probe_fits_one_head_per_weight_decay_and_keeps_the_best(shapes, home, engine):
    from snapid.track import runs as track
    from snapid.track.db import transaction
    from snapid.train.lbfgs import WEIGHT_DECAYS

    config = TrainConfig(**{**TINY_TRAIN, "probe_solver": "auto"})
    summary = train(shapes, config, workspace=home, engine=engine, name="lbfgs")
    with transaction(engine) as s:
        epochs = track.epochs(s, name="lbfgs")
    assert [e["phase"] for e in epochs] == ["probe"] * len(WEIGHT_DECAYS)
    assert [e["lr"] for e in epochs] == pytest.approx(list(WEIGHT_DECAYS))  # the weight decay of each fit
    best = min(epochs, key=lambda e: e["val_loss"])
    assert summary["best_epoch"] == best["epoch"] and summary["val_loss"] == pytest.approx(best["val_loss"])
    assert all(e["train_loss"] < 1.0986 for e in epochs)  # each fit moved from the uniform start, ln 3
    assert summary["test_top1"] >= 0.9
