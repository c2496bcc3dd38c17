"""Explain (issue 19): class activation maps as model.onnx's "cam" output, exact for a linear head on pooled
features, checked against torch at export, kept through int8; other heads export without it and say why."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from snapid.export import explain
from snapid.export.from_run import export_run
from snapid.export.onnx import ParityError, make_session, normalized
from snapid.models import create
from snapid.models.cam import cam_model, grad_cam


def test_cam_is_exact_for_a_linear_head_and_refused_for_others():
    torch.manual_seed(0)
    model = create("custom_cnn", 3, pretrained=False).eval()
    net, why = cam_model(model, size=64)
    assert net is not None and why == ""
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, cam = net(x)
        want = model(x)
    assert cam.shape == (2, 3, 4, 4)
    assert torch.allclose(logits, want, atol=1e-5)
    # each cell's share of the logit: the maps' mean plus the bias is the logit
    assert torch.allclose(cam.mean(dim=(2, 3)) + model.head[1].bias, want, atol=1e-4)

    mlp = create("custom_cnn", 3, pretrained=False, head="mlp", head_dims=(8,)).eval()
    assert cam_model(mlp, size=64)[0] is None and "mlp head" in cam_model(mlp, size=64)[1]
    vgg_like = create("mobilenet_v3_large", 3, pretrained=False).eval()  # a hidden FC after the pooling
    none, why = cam_model(vgg_like, size=64)
    assert none is None and "after its global pooling" in why
    # Grad-CAM (reports) works for the MLP head, one map per image on the feature grid
    maps = grad_cam(mlp, torch.randn(2, 3, 64, 64))
    assert maps.shape == (2, 4, 4) and (maps >= 0).all()


def test_fused_backbones_sum_their_parts_maps_on_the_finest_grid():
    torch.manual_seed(0)
    model = create("custom_cnn+resnet18", 3, pretrained=False).eval()
    net, why = cam_model(model, size=64, embedding=True)
    assert net is not None, why
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, pooled, cam = net(x)
        assert torch.allclose(logits, model(x), atol=1e-4)
        assert torch.allclose(pooled, model.features(x), atol=1e-5)
    assert cam.shape == (2, 3, 4, 4)  # custom_cnn's 4 x 4 (stride 16) beside resnet18's 2 x 2, upsampled


def test_an_explain_capable_bundle_keeps_parity_on_both_outputs(make_run, home, engine):
    make_run("a", probe_epochs=2, size=48)
    bundle = export_run("a", workspace=home, engine=engine, references=0)
    assert bundle.manifest["explain"] == {"available": True, "method": "cam", "output": "cam", "grid": [3, 3]}
    parity = bundle.manifest["parity"]
    assert parity["cam"]["max_abs_diff"] <= explain.CAM_TOLERANCE and parity["cam"]["images"] == parity["images"]
    assert parity["cam"]["peak_agreement"] == 1.0
    outputs = [o.name for o in onnx.load(bundle.file("model.onnx")).graph.output]
    assert outputs[0] == "logits" and outputs[-1] == "cam"
    session = make_session(bundle.file("model.onnx"))
    x = np.zeros((5, 3, 48, 48), np.float32)
    logits, cam = session.run(["logits", "cam"], {"images": x})
    assert logits.shape == (5, 3) and cam.shape == (5, 3, 3, 3)


def test_a_cam_that_drifts_from_torch_is_refused(make_run, home, engine, monkeypatch):
    make_run("a", probe_epochs=1)
    real = explain.cams
    monkeypatch.setattr(explain, "cams", lambda session, inputs: real(session, inputs)[..., ::-1])  # mirrored maps
    with pytest.raises(ParityError, match="class activation maps do not match torch"):
        export_run("a", workspace=home, engine=engine, references=0)
    assert not (home.bundles / "a").exists()


def test_int8_keeps_the_cam_output_and_its_gate(make_run, home, engine):
    make_run("a", probe_epochs=3, size=48)
    bundle = export_run("a", workspace=home, engine=engine, int8=True, max_int8_drop=50, references=0)
    assert bundle.manifest["int8"] is True and bundle.manifest["explain"]["available"] is True
    session = make_session(bundle.file("model.onnx"))
    from snapid.evaluate.loaded import load_trained, split_dataset

    trained = load_trained("a", engine=engine)
    images, _ = split_dataset(trained, "val", workspace=home, engine=engine).__getitems__([0, 1, 2])
    cam = session.run(["cam"], {"images": normalized(images, bundle.preprocess)})[0]
    assert cam.shape == (3, 3, 3, 3) and np.isfinite(cam).all()


def test_an_mlp_head_exports_without_explain_and_says_why(make_run, home, engine):
    make_run("m", probe_epochs=1, head="mlp", head_dims=[8])
    bundle = export_run("m", workspace=home, engine=engine, references=0)
    entry = bundle.manifest["explain"]
    assert entry["available"] is False and "mlp head" in entry["reason"]
    assert "cam" not in [o.name for o in onnx.load(bundle.file("model.onnx")).graph.output]
    assert "cam" not in bundle.manifest["parity"]
