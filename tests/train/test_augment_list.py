"""Augmentation spelled out: a list of operations with parameters, validated entry by entry; presets are
named lists of the same operations and keep their kornia pipelines."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from snapid.errors import SnapidError
from snapid.train.augment import OPERATIONS, PRESET_OPS, augment_from_flag, build_augment, parse_augment
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from tests.helpers import TINY_TRAIN

PLANT = ["hflip", "vflip", {"rotate": 20}, {"translate": 0.3}, {"scale": [0.8, 1.2]}, {"blur": 3},
         {"color_jitter": 0.2}]


def test_the_plant_projects_list_builds_and_runs():
    augment = build_augment(PLANT, 32, (0.5,) * 3, (0.5,) * 3).train()
    kinds = [type(m).__name__ for m in augment.ops]
    assert kinds == ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomAffine", "RandomGaussianBlur", "ColorJitter"]
    affine = repr(augment.ops[2])  # one affine transform for the consecutive rotate, translate, scale
    assert "degrees=20.0" in affine and "translate=(0.3, 0.3)" in affine and "scale=(0.8, 1.2)" in affine
    out = augment(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (4, 3, 32, 32) and torch.isfinite(out).all()


def test_every_operation_builds():
    augment = build_augment(list(OPERATIONS), 32, (0.5,) * 3, (0.5,) * 3).train()
    assert augment(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)).shape == (2, 3, 32, 32)


def test_presets_are_lists_of_the_same_operations():
    assert set(PRESET_OPS) == {"none", "light", "medium", "heavy"}
    heavy = build_augment("heavy", 32, (0.5,) * 3, (0.5,) * 3)
    assert [type(m).__name__ for m in heavy.ops] == ["RandomAffine", "RandomResizedCrop", "RandomHorizontalFlip",
                                                     "ColorJitter", "RandomErasing"]
    assert heavy.ops[0].p == 0.9 and heavy.ops[3].p == 0.8


@pytest.mark.parametrize("bad,named", [(["rotat"], "entry 1"), ([{"blur": 4}], "blur"), ([{"scale": [1.2]}], "scale"),
                                       (["hflip", {"rotate": 20, "q": 1}], "entry 2"), ("mediun", "preset"),
                                       ([{"translate": 2}], "translate"), ([{"rotate": 10, "p": 1.5}], "p must be")])
def test_bad_entries_are_refused_by_name(bad, named):
    with pytest.raises(SnapidError, match="augment") as caught:
        TrainConfig.load(None, {"augment": bad})
    assert named in caught.value.message


def test_the_command_line_spells_the_same_list():
    assert augment_from_flag("hflip,vflip,rotate=20,translate=0.3,scale=0.8:1.2,blur=3,color_jitter=0.2") == PLANT
    assert augment_from_flag("heavy") == "heavy" and parse_augment(augment_from_flag("hflip=0.3"))[0]["p"] == 0.3


def test_train_help_lists_every_operation(tmp_path):
    out = subprocess.run([sys.executable, "-m", "snapid", "train", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "SNAPID_HOME": str(tmp_path)}).stdout
    flat = " ".join(out.split())
    assert all(name in flat for name in OPERATIONS), flat


def test_a_run_trains_with_a_listed_augmentation(shapes, home, engine):
    summary = train(shapes, TrainConfig(**{**TINY_TRAIN, "augment": PLANT, "probe_views": 3, "finetune_epochs": 1}),
                    workspace=home, engine=engine, name="plant-aug")
    assert 0 <= summary["test_top1"] <= 1
