"""detect → crop → classify vs whole photos: the accounting (pure) and one small end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapid.detect.compare import compare_two_stage, tally
from snapid.errors import SnapidError


def record(labels, whole, crops, gt_crops, single):
    return {"labels": labels, "whole": whole, "crops": crops, "gt_crops": gt_crops, "single": single}


def test_tally_counts_single_photos_and_objects():
    records = [
        record(["a"], "b", ["a"], ["a"], True),          # the crop fixes it
        record(["a"], "a", [], ["a"], True),             # nothing detected: whole photo is the answer
        record(["b", "b"], "b", ["a"], ["b", "b"], True),  # one label, two boxes: still a single-label photo
        record(["a", "c"], "a", ["a", None], ["a", "c"], False),  # second object missed
    ]
    t = tally(records)
    assert t["single"] == {"photos": 3, "whole_top1": pytest.approx(2 / 3), "crop_top1": pytest.approx(2 / 3),
                           "gt_crop_top1": 1.0, "fallback": 1}
    assert t["multi"] == {"photos": 1, "objects": 2, "whole_top1": 0.5, "crop_top1": 0.5, "detected": 0.5,
                          "gt_crop_top1": 1.0}
    assert tally([])["single"]["whole_top1"] is None


@pytest.mark.slow
def test_compare_end_to_end(pills, home, engine):
    """A classifier trained on the pill crops, a one-epoch detector; every photo is accounted for."""
    from snapid.detect.train import train_detector
    from snapid.train.config import TrainConfig
    from snapid.train.fit import train
    from tests.helpers import TINY_TRAIN

    train("pills", TrainConfig(**dict(TINY_TRAIN, crop="boxes", pad=0.1)), workspace=home, engine=engine, name="cls")
    train_detector(pills, workspace=home, engine=engine, epochs=1, size=96, name="det")
    result = compare_two_stage(pills, classifier="cls", detector="det", workspace=home, engine=engine,
                               split="train", score_threshold=0.0)
    s, m = result["single"], result["multi"]
    assert s["photos"] + m["photos"] == len(result["photos"]) > 20
    singles = [p for p in result["photos"] if len(set(p["labels"])) == 1]
    assert s["photos"] == len(singles) and s["fallback"] == sum(not p["crops"] for p in singles)
    assert all(len(p["gt_crops"]) == len(p["labels"]) for p in result["photos"])
    for value in (s["whole_top1"], s["crop_top1"], s["gt_crop_top1"], m["whole_top1"], m["crop_top1"]):
        assert 0.0 <= value <= 1.0
    stored = json.loads((Path(home.runs) / "det" / "compare-cls-train.json").read_text())
    assert stored["single"] == s
    with pytest.raises(SnapidError, match="not a detector"):
        compare_two_stage(pills, classifier="cls", detector="cls", workspace=home, engine=engine)


def test_cli_reports_errors_in_one_line(home, engine, make_run):
    """`snapid detect` is registered; a classifier given as --detector fails with the reason."""
    from typer.testing import CliRunner

    from snapid.cli import app

    make_run("cls")
    runner = CliRunner()
    assert "compare" in runner.invoke(app, ["detect", "--help"]).output
    result = runner.invoke(app, ["detect", "eval", "cls"])
    assert result.exit_code != 0 and "not a detector" in str(result.exception)
