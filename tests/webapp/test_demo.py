"""`snapid demo --no-serve` end to end (slow: it trains), then its bundle served: knowledge cards and
interaction rules travel from the demo's CSV files into the bundle, and two single-pill crops of an
interacting pair, sent as different items, come back with the warning."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from snapid.cli import app as cli
from snapid.config import Settings
from snapid.data.demo import INTERACTIONS
from snapid.serve.app import create_app
from snapid.track import crud
from snapid.track.db import transaction

pytestmark = pytest.mark.slow
CROPS_PER_CLASS = 4


def crop(root: Path, sample, pad: float = 0.15) -> bytes:
    """The sample's single pill, cut out by its box with the training padding, as a JPEG."""
    im = Image.open(root / sample.path).convert("RGB")
    box = sample.boxes[0]
    x0, y0, x1, y1 = box.x1, box.y1, box.x2, box.y2
    margin = pad * max(x1 - x0, y1 - y0)
    out = io.BytesIO()
    im.crop((max(0, x0 - margin), max(0, y0 - margin), min(im.width, x1 + margin), min(im.height, y1 + margin))).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo-home")
    result = CliRunner().invoke(cli, ["demo", "--no-serve", "--per-class", "8", "--multi", "6"],
                                env={"SNAPID_HOME": str(home)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "9/9" not in result.output and "knowledge included" in result.output
    [bundle] = [p for p in (home / "bundles").iterdir() if p.is_dir()]
    return home, bundle


def test_the_demo_bundle_holds_the_drug_cards_and_interaction_rules(demo):
    _, bundle = demo
    knowledge = json.loads((bundle / "knowledge.json").read_text())
    assert len(knowledge["cards"]) == 12 and len(knowledge["rules"]) == len(INTERACTIONS)
    assert knowledge["cards"]["4730"]["names"]["en"] == "Snapzole 20 mg capsules"
    assert json.loads((bundle / "calibration.json").read_text())["threshold"] < 1.0  # answers, not only "unknown"


def test_two_interacting_single_pill_crops_warn_in_different_items_mode(demo):
    home, bundle = demo
    settings = Settings(home=home, reload_poll_s=0)
    from snapid.track.db import get_engine

    with transaction(get_engine(settings.resolved_db_url())) as s:
        manifest = crud.load_manifest(s, name="pills-demo")
    root = Path(manifest.root)
    singles: dict[str, list] = {}
    for sample in manifest.samples:
        if sample.label and len(sample.boxes) == 1 and sample.split == "train":
            singles.setdefault(sample.label, []).append(sample)
    with TestClient(create_app(settings, bundle=bundle)) as client:
        def recognised(label: str) -> bytes | None:  # a crop of this class the model gets right
            for sample in singles.get(label, [])[:CROPS_PER_CLASS]:
                photo = crop(root, sample)
                answer = client.post("/api/v1/predict?lang=en", files=[("files", ("pill.jpg", photo, "image/jpeg"))]).json()
                if not answer["unknown"] and answer["predictions"][0]["id"] == label:
                    assert answer["card"]["class_id"] == label and answer["card"]["fields"]
                    return photo
            return None

        for a, b, severity, _, reason_en in INTERACTIONS:
            first, second = recognised(str(a)), recognised(str(b))
            if first is None or second is None:
                continue
            answer = client.post("/api/v1/predict?mode=each&lang=en", files=[
                ("files", ("a.jpg", first, "image/jpeg")), ("files", ("b.jpg", second, "image/jpeg"))]).json()
            [warning] = answer["warnings"]
            assert sorted(warning["classes"]) == sorted([str(a), str(b)])
            assert warning["severity"] == severity and warning["message"] == reason_en
            same = client.post("/api/v1/predict?lang=en", files=[
                ("files", ("a.jpg", first, "image/jpeg")), ("files", ("b.jpg", second, "image/jpeg"))]).json()
            assert same["warnings"] == []  # one object: rules need several
            return
    pytest.fail("the demo model recognised neither pill of any interacting pair")
