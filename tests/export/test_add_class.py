"""`snapid add-class` (issue 20): a new class from a few photos, appended to the bundle's linear head as a prototype
row; a new, verified bundle version the server hot-swaps to; refusals that name why."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from snapid.cli import app as cli
from snapid.export.add_class import AddClassError, add_class, balance_factor, prototype_row
from snapid.export.bundle import BundleError, load_bundle, write_bundle
from snapid.serve.app import create_app
from tests.serve.conftest import SIZE, bundle_files, coloured

YELLOW = (220, 220, 40)


def colour_model(*, embedding: bool = True, hidden: bool = False) -> bytes:
    """images → GlobalAveragePool → Flatten → "embedding" (the mean colour) → Gemm → logits (red, green, blue);
    ``hidden``: an MLP head instead (Gemm → Relu → Gemm), which add-class refuses."""
    weight = (4 * np.eye(3)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1)]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, (3, 3), weight.ravel()),
             helper.make_tensor("b", TensorProto.FLOAT, (3,), np.zeros(3, np.float32))]
    if hidden:
        nodes += [helper.make_node("Gemm", ["embedding", "W", "b"], ["h"], transB=1),
                  helper.make_node("Relu", ["h"], ["r"]),
                  helper.make_node("Gemm", ["r", "W", "b"], ["logits"], transB=1)]
    else:
        nodes.append(helper.make_node("Gemm", ["embedding", "W", "b"], ["logits"], transB=1))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])]
    if embedding:
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]))
    graph = helper.make_graph(nodes, "colours", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                               ["N", 3, SIZE, SIZE])], outputs,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def make(path: Path, *, knowledge: dict | None = None, **kw) -> Path:
    files = bundle_files(model=colour_model(**kw))
    if knowledge is not None:
        files["knowledge.json"] = json.dumps(knowledge).encode()
    write_bundle(path, files, info={"name": "colours", "version": "1"})
    return path


def photos(folder: Path, rgb=YELLOW, n: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        path.write_bytes(coloured(tuple(max(0, min(255, c + 7 * i - 20)) for c in rgb)))
        out.append(path)
    return out


def test_the_new_class_is_a_new_verified_version_that_wins_its_own_photos(tmp_path):
    bundle = make(tmp_path / "b", knowledge={"dataset": "colours", "cards": {"red": {"class_id": "red", "names": {}}},
                                             "rules": []})
    before = load_bundle(bundle)
    shots = photos(tmp_path / "yellow")
    after = add_class(bundle, "Yellow thing", shots)

    assert after.sha256 != before.sha256 and after.version != before.version
    assert load_bundle(bundle).sha256 == after.sha256                      # verification passes: hashes cover edits
    files = after.manifest["files"]
    for name in ("model.onnx", "labels.json", "card.md"):
        assert files[name]["sha256"] == hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        assert files[name]["sha256"] != before.manifest["files"][name]["sha256"]
    assert files["calibration.json"] == before.manifest["files"]["calibration.json"]  # calibration stays
    assert [c["id"] for c in after.labels] == ["red", "green", "blue", "yellow_thing"]
    assert after.manifest["classes"] == 4
    entry = after.manifest["added_classes"][0]
    assert entry["name"] == "Yellow thing" and entry["index"] == 3 and entry["wins_own_photos"] == len(shots)
    assert [p["sha256"] for p in entry["photos"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in shots]
    assert entry["from_manifest_sha256"] == before.sha256 and entry["head"]["centred"] is False  # no references
    card = (bundle / "card.md").read_text()
    assert "without retraining: Yellow thing" in card and entry["photos"][0]["sha256"] in card
    cards = after.knowledge["cards"]
    assert list(cards) == ["red", "yellow_thing"] and cards["yellow_thing"]["name"] == "Yellow thing"
    assert "add-class" in cards["yellow_thing"]["fields"]["added"]

    # the existing rows are untouched; the new one has their mean norm, its bias their mean bias
    from onnx import numpy_helper
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(bundle / "model.onnx")).graph.initializer}
    assert np.allclose(weights["W"][:3], 4 * np.eye(3)) and weights["W"].shape == (4, 3)
    assert np.linalg.norm(weights["W"][3]) == pytest.approx(4, rel=1e-5) and weights["b"][3] == 0

    # a second class on top of the first: recorded too, and the earlier one kept
    again = add_class(bundle, "Cyan thing", photos(tmp_path / "cyan", rgb=(40, 220, 220)))
    assert [e["name"] for e in again.manifest["added_classes"]] == ["Yellow thing", "Cyan thing"]


def test_served_model_hot_swaps_to_the_new_class(tmp_path, home):
    from snapid.config import Settings

    bundle = make(tmp_path / "bundles" / "colours")
    settings = Settings(home=home.home, reload_poll_s=0.1, admin_token="s3cret-admin-t0ken", drain_s=0.2)
    shot = coloured(YELLOW)
    with TestClient(create_app(settings, bundle=bundle)) as client:
        first = client.post("/api/v1/predict", files=[("files", ("p.jpg", shot, "image/jpeg"))]).json()
        add_class(bundle, "Yellow thing", photos(tmp_path / "yellow"))
        version = load_bundle(bundle).version
        deadline = time.monotonic() + 10
        while client.app.state.predictor.model.info["version"] != version and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = client.post("/api/v1/predict", files=[("files", ("p.jpg", shot, "image/jpeg"))]).json()
        red = client.post("/api/v1/predict", files=[("files", ("p.jpg", coloured((220, 40, 40)), "image/jpeg"))])
    assert first["model"]["version"] == "1" and answer["model"]["version"] == version
    assert answer["predictions"][0]["display_name"] == "Yellow thing"
    assert red.json()["predictions"][0]["display_name"] == "Red thing"     # the old classes still answer


def test_a_real_exported_run_with_references_and_cam(make_run, home, engine, tmp_path):
    from snapid.export.from_run import export_run
    from snapid.export.onnx import make_session

    make_run("a")
    bundle = export_run("a", tmp_path / "a", workspace=home, engine=engine, references=4)
    n_refs = bundle.manifest["references"]["photos"]
    shots = photos(tmp_path / "yellow", n=5)
    after = add_class(bundle.path, "Yellow", shots)
    assert after.manifest["classes"] == 4 and after.manifest["references"]["photos"] == n_refs + 4  # per_class 4
    doc = json.loads(after.file("references.json").read_bytes())
    assert {i["class"] for i in doc["items"]} == {0, 1, 2, 3}
    assert after.manifest["added_classes"][0]["head"]["centred"] is True   # centred on the reference photos
    head = after.manifest["added_classes"][0]["head"]
    held_out = json.loads(bundle.file("references.json").read_bytes())["held_out"]["classes"]
    assert head["held_out_photos"] == len(held_out) > 0
    assert 0.25 <= head["balance_factor"] <= 4 and "best expected accuracy" in after.file("card.md").read_text()
    vectors = np.load(after.file("references.npy"), allow_pickle=False)
    assert vectors.shape[0] == len(doc["items"])
    session = make_session(after.file("model.onnx"))
    x = np.zeros((2, 3, 32, 32), np.float32)
    logits, cam = session.run(["logits", "cam"], {"images": x})
    assert logits.shape == (2, 4) and cam.shape[1] == 4                    # the maps gained the class too


def _balanced(direction: np.ndarray, rng) -> tuple[float, dict]:
    """balance_factor for a new class whose 5 photos lie around ``direction``, beside three trained classes (the
    axes 0-2 of a 4-d feature space, rows 3 x the axis) with reference and held-out photos of their own."""
    rows, bias = 3 * np.eye(3, 4, dtype=np.float32), np.zeros(3, np.float32)
    labels = np.repeat(np.arange(3), 20)
    def around(centres):
        return np.abs(centres + rng.normal(0, 0.25, centres.shape)).astype(np.float32)
    axes = np.eye(3, 4, dtype=np.float32)[labels]
    references = (prototype_unit(around(axes)), labels)
    held_out = around(axes)
    photos, mirrored = around(np.tile(direction, (5, 1))), around(np.tile(direction, (5, 1)))
    row, row_bias, _ = prototype_row(rows, bias, np.concatenate([photos, mirrored]), references)
    keep = [np.arange(5) != i for i in range(5)]
    left_out_rows = np.stack([prototype_row(rows, bias, np.concatenate([photos[m], mirrored[m]]), references)[0]
                              for m in keep])
    return balance_factor(rows, bias, row, row_bias, held_out, labels, left_out_rows,
                          np.stack([photos, mirrored], axis=1), 1.0)


def prototype_unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_scale_quiets_a_lookalike_and_lets_a_distinctive_class_speak_up():
    """A new class whose photos also look like trained class 0 gets a quieter row than one unlike every trained
    class; either way the chosen scale scores at least as well as the level-matched row on the photos neither
    row saw (held-out photos of the trained classes, the new photos left out in turn)."""
    rng = np.random.default_rng(0)
    k_look, look = _balanced(np.array([1.0, 0, 0, 1.0]), rng)
    k_dist, dist = _balanced(np.array([0, 0, 0, 1.5]), rng)
    assert k_look < k_dist
    for fit in (look, dist):
        assert fit["expected_accuracy"] >= fit["expected_accuracy_unscaled"] and fit["held_out_photos"] == 60


def test_refusals_name_why(tmp_path):
    bundle = make(tmp_path / "b")
    shots = photos(tmp_path / "yellow", n=21)
    with pytest.raises(AddClassError, match="4 photos: a new class needs 5 to 20"):
        add_class(bundle, "Yellow", shots[:4])
    with pytest.raises(AddClassError, match="21 photos"):
        add_class(bundle, "Yellow", shots)
    with pytest.raises(AddClassError, match="already has a class"):
        add_class(bundle, "red", shots[:5])
    with pytest.raises(AddClassError, match="already has a class"):
        add_class(bundle, "Green Thing", shots[:5])
    broken, tiny = tmp_path / "broken.jpg", tmp_path / "tiny.png"
    broken.write_bytes(b"not a photo at all")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 200, 0)).save(buf, "PNG")
    tiny.write_bytes(buf.getvalue())
    with pytest.raises(AddClassError) as refused:
        add_class(bundle, "Yellow", [*shots[:4], broken, tiny])
    assert "broken.jpg" in str(refused.value) and "tiny.png" in str(refused.value)
    with pytest.raises(AddClassError, match="same photo twice"):
        add_class(bundle, "Yellow", [*shots[:4], shots[0]])
    assert load_bundle(bundle).version == "1"                              # nothing was written

    with pytest.raises(AddClassError, match="no 'embedding' output"):
        add_class(make(tmp_path / "plain", embedding=False), "Yellow", shots[:5])
    with pytest.raises(AddClassError, match="not one linear layer"):
        add_class(make(tmp_path / "mlp", hidden=True), "Yellow", shots[:5])
    with pytest.raises(BundleError, match="no such bundle"):
        add_class(tmp_path / "nowhere", "Yellow", shots[:5])


def test_cli(tmp_path):
    bundle = make(tmp_path / "b")
    shots = [str(p) for p in photos(tmp_path / "yellow")]
    result = CliRunner().invoke(cli, ["add-class", str(bundle), "Yellow", *shots, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"] == 4
    refused = CliRunner().invoke(cli, ["add-class", str(bundle), "Yellow", *shots])
    assert refused.exit_code != 0 and "already has a class" in str(refused.exception)  # main() prints SnapidErrors


def test_two_runs_at_once_take_turns_and_keep_both_classes(tmp_path):
    """Two processes adding to one bundle (two review-page workers, two terminals): each reads, edits and writes the
    whole bundle, so without the lock the later write would drop the earlier class."""
    import subprocess
    import sys

    bundle = make(tmp_path / "b")
    runs = [subprocess.Popen([sys.executable, "-m", "snapid", "add-class", "--json", str(bundle), name,
                              *map(str, photos(tmp_path / name, rgb))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name, rgb in (("Yellow", YELLOW), ("Cyan", (40, 220, 220)))]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err.decode()
    assert {c["name"] for c in load_bundle(bundle).labels} >= {"Cyan", "Yellow"}
    assert len(load_bundle(bundle).labels) == 5
