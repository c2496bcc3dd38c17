"""A dataset that came with only train/ and val/: `snapid eval` and `snapid report` use the held-out split
there is (val) and say so, instead of failing on an empty test split."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from snapid.evaluate.evaluation import held_out_split
from snapid.importer import import_dataset
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from tests.helpers import TINY_TRAIN, shapes_dataset


def test_report_and_eval_fall_back_to_val_and_say_so(tmp_path, engine, home, make_run):
    flat = shapes_dataset(tmp_path / "flat", per_class=10)
    given = tmp_path / "given"
    for label in ("disc", "square", "stripes"):
        for i in range(10):
            split = "train" if i < 7 else "val"
            (given / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(flat / label / f"{i}.png", given / split / label / f"{i}.png")
    report = import_dataset(given, name="two-splits", engine=engine)
    assert report.splits == {"train": 21, "val": 9}
    train("two-splits", TrainConfig(**TINY_TRAIN), workspace=home, engine=engine, name="two")
    split, note = held_out_split("two", engine=engine)
    assert split == "val" and "two-splits v1 has no test photos" in note
    make_run("three")  # shapes: it has a test split
    assert held_out_split("three", engine=engine) == ("test", "")

    from snapid.cli import app

    runner = CliRunner()
    out = tmp_path / "two.html"
    done = runner.invoke(app, ["report", "two", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "no test photos: reporting on the validation split" in " ".join(done.output.split())
    assert out.is_file() and "<html" in out.read_text()[:500].lower()
    evaluated = runner.invoke(app, ["eval", "two", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert '"split": "val"' in evaluated.stdout
    default = runner.invoke(app, ["report", "three"])  # no --out: the workspace's reports folder
    assert default.exit_code == 0, default.output
    assert (home.reports / "three.html").is_file()
