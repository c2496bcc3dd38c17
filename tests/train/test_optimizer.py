"""The optimiser is a choice (the product project's best trial used RMSprop): each trains, and tune can search it."""

from __future__ import annotations

import pytest
import torch

from snapid.errors import SnapidError
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.train.setup import make_optimizer
from snapid.train.tune import parse_space
from tests.helpers import TINY_TRAIN


@pytest.mark.parametrize("name,kind,option", [("adamw", torch.optim.AdamW, "weight_decay"),
                                              ("sgd", torch.optim.SGD, "momentum"),
                                              ("rmsprop", torch.optim.RMSprop, "alpha")])
def test_each_optimiser_is_built_with_its_settings(name, kind, option):
    cfg = TrainConfig(optimizer=name, momentum=0.8, alpha=0.95, weight_decay=0.02)
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg, lr=0.007)
    assert isinstance(optimizer, kind)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.007 and group[option] == {"weight_decay": 0.02, "momentum": 0.8, "alpha": 0.95}[option]


@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_a_run_fine_tunes_with_the_chosen_optimiser(name, shapes, home, engine):
    summary = train(shapes, TrainConfig(**{**TINY_TRAIN, "optimizer": name, "lr": 0.007, "finetune_epochs": 1}),
                    workspace=home, engine=engine, name=f"opt-{name}")
    assert 0 <= summary["test_top1"] <= 1


def test_an_unknown_optimiser_is_refused_by_name():
    with pytest.raises(SnapidError, match="optimizer"):
        TrainConfig.load(None, {"optimizer": "adam2"})


def test_tune_can_search_the_optimiser():
    space = parse_space({"method": "tpe", "params": {"optimizer": ["adamw", "sgd", "rmsprop"]}}, TrainConfig())
    assert space.params["optimizer"].choices == ("adamw", "sgd", "rmsprop")
    with pytest.raises(SnapidError, match="params.optimizer"):
        parse_space({"params": {"optimizer": ["adamw", "adam2"]}}, TrainConfig())
