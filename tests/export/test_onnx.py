"""ONNX export: the graph matches torch on real validation images, or the export fails and writes nothing."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch

from snapid.evaluate.loaded import load_trained, predict_logits, split_dataset
from snapid.export import from_run as export_mod
from snapid.export import onnx as onnx_export
from snapid.export.bundle import TORCHSCRIPT_FORMAT, BundleError, load_bundle
from snapid.export.from_run import export_run
from snapid.export.onnx import (
    PARITY_TOLERANCE,
    ParityError,
    check_parity,
    make_session,
    normalized,
)
from snapid.metrics import softmax
from snapid.track import runs as track
from snapid.track.db import transaction


def _artifacts(engine, name) -> dict:
    with transaction(engine) as s:
        return {a["kind"]: a for a in track.artifacts(s, name=name)}


def _bundle_probabilities(bundle, images: torch.Tensor) -> np.ndarray:
    session = make_session(bundle.file("model.onnx"))
    logits = session.run(["logits"], {"images": normalized(images, bundle.preprocess)})[0]
    return softmax(logits, bundle.calibration["temperature"])


def test_a_trained_run_exports_to_a_bundle_that_matches_torch(make_run, home, engine):
    make_run("a", probe_epochs=4)
    bundle = export_run("a", workspace=home, engine=engine)
    assert bundle.path == home.bundles / "a" and bundle.name == "a" and bundle.version.startswith("a-")
    parity = bundle.manifest["parity"]
    assert parity["max_abs_diff"] <= PARITY_TOLERANCE and parity["images"] > 0 and parity["split"] == "val"
    assert parity["argmax_agreement"] == 1.0

    trained = load_trained("a", engine=engine)
    assert [c["id"] for c in bundle.labels] == [c["id"] for c in trained.classes] == ["disc", "square", "stripes"]
    assert bundle.labels[0] == {"index": 0, "id": "disc", "name": "disc", "display_names": {}}
    assert bundle.preprocess == {k: trained.preprocess[k]
                                 for k in ("size", "resize", "crop_boxes", "pad", "mean", "std")}
    # never calibrated before: the export fitted the calibration first, so the bundle can answer "not sure"
    assert bundle.calibration["calibrated"] is True and bundle.calibration["temperature"] != 1.0
    assert bundle.manifest["int8"] is False and bundle.manifest["dataset"] == "shapes"
    card = bundle.file("card.md").read_text()
    assert "# Model card" in card and "- 2: stripes" in card and "## Intended use and limits" in card

    # the served path (ONNX Runtime on the bundle's files) agrees with evaluation's torch path on the whole test split
    test = split_dataset(trained, "test", workspace=home, engine=engine)
    logits, _ = predict_logits(trained.model, test, trained.preprocess)
    images, _ = test.__getitems__(list(range(len(test))))
    expected = softmax(logits, bundle.calibration["temperature"])  # the bundle carries the fitted temperature
    assert np.abs(_bundle_probabilities(bundle, images) - expected).max() <= PARITY_TOLERANCE

    artifact = _artifacts(engine, "a")["bundle"]
    assert artifact["path"] == str(bundle.path) and artifact["sha256"] == bundle.sha256
    assert artifact["meta"]["version"] == bundle.version and artifact["meta"]["format"] == "snapid-bundle"


def test_the_graph_has_a_dynamic_batch_and_the_agreed_names(make_run, home, engine):
    make_run("a", probe_epochs=1)
    bundle = export_run("a", workspace=home, engine=engine)
    graph = onnx.load(bundle.file("model.onnx")).graph
    # the pooled embedding beside the logits (issue 20: reference photos)
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output][:2] == ["logits", "embedding"]
    assert all(o.type.tensor_type.shape.dim[0].dim_param for o in graph.output)
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed batch
    session = make_session(bundle.file("model.onnx"))
    size = bundle.preprocess["size"]
    for n in (1, 5):
        out = session.run(["logits"], {"images": np.zeros((n, 3, size, size), np.float32)})[0]
        assert out.shape == (n, 3)


def test_calibration_comes_from_the_stored_calibration(make_run, home, engine):
    from snapid.evaluate.calibrate import calibrate_run

    make_run("a", probe_epochs=4)
    stored = calibrate_run("a", workspace=home, engine=engine)
    bundle = export_run("a", workspace=home, engine=engine)
    assert bundle.calibration["temperature"] == pytest.approx(stored["temperature"])
    assert bundle.calibration["threshold"] == pytest.approx(stored["threshold"])
    assert bundle.calibration["calibrated"] is True
    assert f"softmax(logits / {stored['temperature']:.4f})" in bundle.file("card.md").read_text()


def test_a_graph_that_differs_from_torch_is_refused_and_nothing_is_written(make_run, home, engine, monkeypatch):
    make_run("a", probe_epochs=2)
    real_to_onnx = onnx_export.to_onnx

    def skewed(module, size, **kw):  # the exported graph's head bias is off by 0.01: a small, real mismatch
        module = copy.deepcopy(module)
        with torch.no_grad():
            module.head[-1].bias += torch.tensor([0.01, 0.0, 0.0])
        return real_to_onnx(module, size, **kw)

    monkeypatch.setattr(onnx_export, "to_onnx", skewed)
    with pytest.raises(ParityError) as err:
        export_run("a", workspace=home, engine=engine)
    assert err.value.code == "parity_failed" and err.value.message.startswith("a: the export does not match torch")
    assert "tolerance 0.0001" in err.value.message
    assert not home.bundles.exists() or not any(home.bundles.iterdir())
    assert "bundle" not in _artifacts(engine, "a")


def test_check_parity_refuses_nan_wrong_shape_and_empty_input():
    inputs = np.zeros((4, 3, 8, 8), np.float32)
    reference = softmax(np.zeros((4, 3)))
    assert check_parity(lambda x: np.zeros((4, 3)), inputs, reference)["max_abs_diff"] == 0.0
    with pytest.raises(ParityError, match="max"):
        check_parity(lambda x: np.full((4, 3), np.nan), inputs, reference)
    with pytest.raises(ParityError, match=r"\(4, 2\)"):
        check_parity(lambda x: np.zeros((4, 2)), inputs, reference)
    with pytest.raises(ParityError, match="no images"):
        check_parity(lambda x: np.zeros((0, 3)), inputs[:0], reference[:0])
    shifted = np.zeros((4, 3))
    shifted[2, 0] = 1e-3  # about 2e-4 in probability: over the tolerance, on image 2
    with pytest.raises(ParityError, match="parity image 2 of 4"):
        check_parity(lambda x: shifted, inputs, reference)


@pytest.mark.slow
def test_a_pretrained_mobilenet_v2_passes_parity(make_run, home, engine, tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPID_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    make_run("m", model="mobilenet_v2", pretrained=True, size=64, batch_size=12, probe_epochs=2)
    bundle = export_run("m", workspace=home, engine=engine)
    assert bundle.manifest["model"] == "mobilenet_v2" and bundle.preprocess["size"] == 64
    assert bundle.manifest["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    assert "pretrained ImageNet weights" in bundle.file("card.md").read_text()


def test_an_ensemble_exports_as_one_graph_matching_ensemble_logits(make_run, home, engine):
    from snapid.evaluate.ensemble import create_ensemble, ensemble_logits

    make_run("a", probe_epochs=3)
    make_run("b", probe_epochs=3, seed=1)
    create_ensemble(["a", "b"], name="ab", method="weighted", workspace=home, engine=engine)
    bundle = export_run("ab", workspace=home, engine=engine)
    assert bundle.manifest["kind"] == "ensemble" and [m["name"] for m in bundle.manifest["members"]] == ["a", "b"]
    assert bundle.manifest["parity"]["max_abs_diff"] <= PARITY_TOLERANCE

    log_probs, _, dataset = ensemble_logits("ab", "test", workspace=home, engine=engine)
    images, _ = dataset.__getitems__(list(range(len(dataset))))
    onnx_probs = softmax(make_session(bundle.file("model.onnx")).run(
        ["logits"], {"images": normalized(images, bundle.preprocess)})[0])
    assert np.abs(onnx_probs - np.exp(log_probs)).max() <= PARITY_TOLERANCE
    card = bundle.file("card.md").read_text()
    assert "An ensemble (weighted voting) of 2 runs" in card and "custom_cnn: a" in card
    assert "bundle" in _artifacts(engine, "ab")


def test_ensemble_members_with_another_mean_and_std_are_restandardised_in_the_graph():
    torch.manual_seed(0)
    a, b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)

    def pool(conv):
        return torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))

    first = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    other = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    net = export_mod.EnsembleNet([pool(a), pool(b)], [0.25, 0.75], [1.0, 2.0], [first, other]).eval()
    raw = torch.rand(2, 3, 8, 8)
    x_first = (raw - torch.tensor(first["mean"]).view(1, 3, 1, 1)) / torch.tensor(first["std"]).view(1, 3, 1, 1)
    x_other = (raw - torch.tensor(other["mean"]).view(1, 3, 1, 1)) / torch.tensor(other["std"]).view(1, 3, 1, 1)
    expected = 0.25 * torch.softmax(pool(a)(x_first), 1) + 0.75 * torch.softmax(pool(b)(x_other) / 2.0, 1)
    with torch.no_grad():
        assert torch.allclose(net(x_first).exp(), expected, atol=1e-6)


def test_torchscript_is_a_plain_export_the_server_refuses(make_run, home, engine, tmp_path):
    make_run("a", probe_epochs=1)
    bundle = export_run("a", tmp_path / "ts", workspace=home, engine=engine, fmt="torchscript")
    assert bundle.manifest["format"] == TORCHSCRIPT_FORMAT and set(bundle.manifest["files"]) >= {"model.pt", "card.md"}
    assert bundle.manifest["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    with pytest.raises(BundleError, match="torchscript"):
        load_bundle(tmp_path / "ts")  # what the server calls
    assert load_bundle(tmp_path / "ts", formats=(TORCHSCRIPT_FORMAT,)).version == bundle.version


def test_unknown_format_and_int8_torchscript_are_usage_errors(make_run, home, engine):
    from snapid.errors import SnapidError

    make_run("a", probe_epochs=1)
    with pytest.raises(SnapidError, match="--format 'tflite'"):
        export_run("a", workspace=home, engine=engine, fmt="tflite")
    with pytest.raises(SnapidError, match="--int8"):
        export_run("a", workspace=home, engine=engine, fmt="torchscript", int8=True)


def test_cli_export_prints_the_manifest(make_run, home, tmp_path):
    from tests.test_cli import snapid

    make_run("a", probe_epochs=1)
    result = snapid("export", "a", "--out", str(tmp_path / "b"), "--zip", "--json", home=home.home)
    manifest = json.loads(result.stdout)
    assert manifest["path"] == str(tmp_path / "b") and manifest["run"] == "a" and manifest["parity"]["images"] > 0
    assert (tmp_path / "b.snapid").is_file()
    failed = snapid("export", "nope", home=home.home, check=False)
    assert failed.returncode == 1 and "no run named 'nope'" in failed.stderr
