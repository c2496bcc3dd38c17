"""The evaluation report: every section, escaped user text, nothing fetched, and a real PDF."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil

import pytest

from snapid.run_report import ReportError, find_chromium, write_report
from snapid.track import runs as track
from snapid.track.db import transaction

HOSTILE = "<script>alert(1)</script>"
RUN_NAME = 'r<img src=x onerror="alert(2)">'
SECTIONS = ("curves", "classes", "confusion", "calibration", "coverage", "mistakes")


@pytest.fixture
def hostile_run(tmp_path, home, engine) -> str:
    """A tiny run on the shapes, with the stripes class renamed to a script tag and a run name with markup."""
    from snapid.importer import import_dataset
    from snapid.train.config import TrainConfig
    from snapid.train.fit import train
    from tests.helpers import TINY_TRAIN, shapes_dataset

    root = shapes_dataset(tmp_path / "hostile")
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for image in sorted(root.rglob("*.png")):
            label = image.parent.name
            writer.writerow([image.relative_to(root).as_posix(), HOSTILE if label == "stripes" else label])
    import_dataset(root, name="hostile", engine=engine, fmt="csv")
    train("hostile", TrainConfig(**{**TINY_TRAIN, "probe_epochs": 4}), workspace=home, engine=engine, name=RUN_NAME)
    return RUN_NAME


def _assert_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()             # no script tag at all, escaped or not
    for url in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text):
        assert url.startswith(("data:", "#")), url    # inline images and in-page links only
    assert "default-src 'none'" in text              # and the CSP forbids anything else


def test_a_run_report_has_every_section_and_escapes_user_text(hostile_run, home, engine, tmp_path):
    out = write_report([hostile_run], tmp_path / "report.html", workspace=home, engine=engine)
    text = out.read_text(encoding="utf-8")

    for anchor in ("dataset", "r0", *(f"r0-{s}" for s in SECTIONS)):
        assert f'id="{anchor}"' in text, anchor
    for heading in ("Dataset", "Training curves", "Per class", "Confusion", "Calibration",
                    "Accuracy and coverage", "Mistakes"):
        assert f"<h2>{heading}" in text, heading
    assert HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert RUN_NAME not in text and "r&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in text
    _assert_self_contained(text)
    assert text.count("data:image/png;base64,") >= 4   # curves, confusion, reliability, coverage
    assert "data:image/jpeg;base64," in text or "no mistakes on this split" in text

    # the run had no evaluation: the report made one and stored it
    with transaction(engine) as s:
        kinds = {a["kind"] for a in track.artifacts(s, name=hostile_run)}
    assert {"eval_test", "calibration"} <= kinds


def test_a_comparison_has_the_leaderboard_and_overlaid_curves(make_run, home, engine, tmp_path):
    from snapid.evaluate.ensemble import create_ensemble

    make_run("a", probe_epochs=4)
    make_run("b", probe_epochs=4, seed=1)
    create_ensemble(["a", "b"], name="ab", workspace=home, engine=engine)
    out = write_report(["ab", "a", "b"], tmp_path / "compare.html", workspace=home, engine=engine)
    text = out.read_text(encoding="utf-8")
    for anchor in ("dataset", "leaderboard", "curves", "r0", "r1", "r2", "r0-mistakes", "r2-calibration"):
        assert f'id="{anchor}"' in text, anchor
    assert "Members (soft voting)" in text and "Training curves of the members" in text
    assert "vs best (95% CI)" in text
    _assert_self_contained(text)


def test_a_malformed_thumbnail_is_dropped_not_embedded(make_run, home, engine, tmp_path):
    from snapid.evaluate.evaluation import evaluate_run

    make_run("a", probe_epochs=1)
    evaluate_run("a", workspace=home, engine=engine)
    path = home.runs / "a" / "eval-test.json"
    evaluation = json.loads(path.read_text())
    evaluation["mistakes"] = [{"position": 0, "true": "disc", "true_name": "disc", "pred": "square",
                               "pred_name": "square", "score": 0.9, "loss": 2.0,
                               "thumbnail": 'https://evil.example/x.png" onerror="alert(3)'}]
    path.write_text(json.dumps(evaluation))
    text = write_report(["a"], tmp_path / "r.html", workspace=home, engine=engine).read_text()
    assert "evil.example" not in text and "true <b>disc</b>" in text
    _assert_self_contained(text)


def test_refusals(make_run, home, engine, tmp_path):
    make_run("a", probe_epochs=1)
    with pytest.raises(ReportError, match="report.docx"):
        write_report(["a"], tmp_path / "report.docx", workspace=home, engine=engine)
    with pytest.raises(ReportError, match="1 to 12 runs"):
        write_report([], tmp_path / "r.html", workspace=home, engine=engine)
    assert not list(tmp_path.glob("r*.*"))


def test_pdf_is_printed_by_headless_chromium(make_run, home, engine, tmp_path):
    if shutil.which("/usr/bin/chromium") is None and os.environ.get("CI") != "true":
        pytest.skip("/usr/bin/chromium is not installed (this test fails instead under CI=true)")
    make_run("a", probe_epochs=2)
    out = write_report(["a"], tmp_path / "report.pdf", workspace=home, engine=engine)
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.pdf")]   # no temp file left


def test_a_missing_chromium_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SNAPID_CHROMIUM", raising=False)
    monkeypatch.setattr("snapid.run_report.CHROMIUM_CANDIDATES", ("chromium",))
    with pytest.raises(ReportError, match="headless Chromium"):
        find_chromium(str(tmp_path / "no-such-browser"))


@pytest.mark.slow
def test_cli_ensemble_leaderboard_and_report(make_run, home, tmp_path):
    from tests.test_cli import snapid

    make_run("a", probe_epochs=4)
    make_run("b", probe_epochs=4, seed=1)
    created = json.loads(snapid("ensemble", "a", "b", "--name", "ab", "--method", "weighted", "--json",
                                home=home.home).stdout)
    assert created["members"] == ["a", "b"] and sum(created["weights"]) == pytest.approx(1)
    board = json.loads(snapid("leaderboard", "shapes", "--json", home=home.home).stdout)
    assert {r["name"] for r in board["rows"]} == {"a", "b", "ab"}
    table = snapid("leaderboard", "shapes", home=home.home).stdout
    assert "ab" in table and "snapid eval a" in table
    out = tmp_path / "cmp.html"
    snapid("report", "--compare", "ab", "a", "--out", str(out), home=home.home)
    assert 'id="leaderboard"' in out.read_text()
    for args, message in ((["a", "b"], "give one RUN (got 2)"), (["--compare", "a"], "needs two or more runs")):
        failed = snapid("report", *args, "--out", str(tmp_path / "x.html"), home=home.home, check=False)
        assert failed.returncode == 1 and message in failed.stderr
    assert not (tmp_path / "x.html").exists()
