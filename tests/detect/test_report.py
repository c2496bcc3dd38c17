"""`snapid report` with detection: a classifier's detect → crop table, a detector run's own section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from snapid.detect.compare import compare_two_stage
from snapid.detect.train import train_detector
from snapid.importer import import_dataset
from snapid.run_report import render_report
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from tests.detect.boxes import write_voc
from tests.helpers import TINY_TRAIN

SCRIPT = "<script>alert(1)</script>"

pytestmark = pytest.mark.slow


@pytest.fixture
def trained(tmp_path, home, engine) -> dict:
    """A crop classifier and a one-epoch per-class detector on shapes labelled SCRIPT and "ok", compared on
    two splits (score threshold 0: a one-epoch detector scores low, and every photo still gets a crop)."""
    root = write_voc(tmp_path / "voc", 24, size=(128, 96), sides=(28, 48), labels=(SCRIPT, "ok"), most=2)
    import_dataset(root, name="marks", engine=engine, fmt="voc")
    train("marks", TrainConfig(**dict(TINY_TRAIN, crop="boxes", pad=0.1)), workspace=home, engine=engine, name="cls")
    train_detector("marks", workspace=home, engine=engine, epochs=1, size=96, class_agnostic=False, name="det")
    results = {split: compare_two_stage("marks", classifier="cls", detector="det", workspace=home, engine=engine,
                                        split=split, score_threshold=0.0) for split in ("train", "test")}
    return results


def pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def table_row(html: str, section: str, first_cells: list[str]) -> list[str]:
    """The cells of the row of section ``section`` whose leading cells are ``first_cells``."""
    body = re.search(rf'<section id="{section}">(.*?)</section>', html, re.DOTALL)
    assert body, f"no section {section}"
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.DOTALL):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        if cells[: len(first_cells)] == first_cells:
            return cells
    raise AssertionError(f"no row starting {first_cells} in {section}")


def test_the_classifier_report_holds_every_comparison(trained, home, engine):
    html = render_report(["cls"], workspace=home, engine=engine)
    for split, result in trained.items():
        s, m = result["single"], result["multi"]
        expected = ["det", split, str(s["photos"]), pct(s["whole_top1"]), pct(s["crop_top1"]), pct(s["gt_crop_top1"]),
                    str(s["fallback"]), str(m["objects"]), pct(m["whole_top1"]), pct(m["crop_top1"]),
                    pct(m["detected"])]
        assert table_row(html, "r0-detect-compare", ["det", split]) == expected
    # no class names there
    assert SCRIPT not in html and "&lt;script&gt;" not in html.split('id="r0-detect-compare"')[1]


def test_a_detector_report_escapes_class_names(trained, home, engine):
    html = render_report(["det"], workspace=home, engine=engine, split="train")
    assert SCRIPT not in html and "<script" not in html
    row = table_row(html, "r0-classes", ["&lt;script&gt;alert(1)&lt;/script&gt;"])
    assert len(row) == 8 and row[1].endswith("%")
    with transaction(engine) as s:
        stored = next(a for a in track.artifacts(s, name="det") if a["kind"] == "detect_eval_train")["meta"]
    assert f"<b>{pct(stored['map50'])}</b><small>mAP@0.5</small>" in html
    assert 'id="r0-curves"' in html and "val mAP@0.5" in html and 'id="r0-gallery"' in html
    assert not re.search(r'src="(?!data:image/(png|jpeg);base64,)', html)   # self-contained: nothing fetched
    both = render_report(["cls", "det"], workspace=home, engine=engine)   # one classifier: no leaderboard
    assert 'id="r0-detect-compare"' in both and 'id="r1-classes"' in both and 'id="leaderboard"' not in both


def test_a_deleted_or_corrupt_comparison_is_a_note(trained, home, engine):
    train_file = Path(home.runs) / "det" / "compare-cls-train.json"
    train_file.unlink()
    (Path(home.runs) / "det" / "compare-cls-test.json").write_text("{not json")
    html = render_report(["cls"], workspace=home, engine=engine)
    section = html.split('id="r0-detect-compare"')[1]
    assert "compare-cls-train.json is missing" in section and "compare-cls-test.json cannot be read" in section
    assert "<td>det</td>" not in section   # no row without figures
