"""Fused backbones: two backbones' features under one head, each part fed its own normalisation, exported as
one ONNX graph whose probabilities match torch's."""

from __future__ import annotations

import pytest
import torch

from snapid.errors import SnapidError
from snapid.export.from_run import export_run
from snapid.models import factory, registry


def test_each_part_sees_the_input_in_its_own_normalisation():
    fused = factory.create("efficientnet_lite0+mobilenet_v2", 4).eval()
    lite, mobile = factory.create("efficientnet_lite0", 4).eval(), factory.create("mobilenet_v2", 4).eval()
    raw = torch.rand(2, 3, 96, 96)
    mean = torch.tensor(registry.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(registry.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        features = fused.features((raw - 0.5) / 0.5)  # fed as its first part (Lite: mean = std = 0.5) expects
        assert torch.allclose(features[:, :1280], lite.features((raw - 0.5) / 0.5), atol=1e-5)
        assert torch.allclose(features[:, 1280:], mobile.features((raw - mean) / std), atol=1e-4)
    assert fused.feature_dim == 2560 and fused.spec.family == "fused" and fused.spec.input_size == 224


def test_unfreezing_the_top_group_unfreezes_the_top_of_every_part():
    fused = factory.create("custom_cnn+mobilenet_v2", 3, pretrained=False)
    fused.freeze_backbone()
    fused.unfreeze(1)
    trainable = {name.split(".")[1] for name, p in fused.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"0", "1"}  # parts.0.* and parts.1.*


@pytest.mark.parametrize("name", ["mobilenet_v2+mobilenet_v2", "mobilenet_v2+", "nosuch+mobilenet_v2"])
def test_bad_fused_names_are_refused(name):
    with pytest.raises(SnapidError):
        registry.get_spec(name)


def test_a_fused_run_exports_with_parity(make_run, home, engine):
    make_run("fused", model="custom_cnn+mobilenet_v2", pretrained=False, size=48)
    bundle = export_run("fused", workspace=home, engine=engine)
    parity = bundle.manifest["parity"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["argmax_agreement"] == 1.0
    assert bundle.preprocess["size"] == 48


def test_a_lite_run_exports_with_parity(make_run, home, engine):
    """TensorFlow "same" padding in the graph: ONNX Runtime agrees with torch."""
    make_run("lite", model="efficientnet_lite0", pretrained=True, size=64)
    bundle = export_run("lite", workspace=home, engine=engine)
    assert bundle.manifest["parity"]["max_abs_diff"] <= 1e-4
    assert bundle.preprocess["mean"] == [0.5, 0.5, 0.5]


def test_a_fused_lite_run_quantises_to_int8(make_run, home, engine, monkeypatch):
    """Static int8 of a graph with TensorFlow "same" padding (its pads come from the input's shape), leaving
    nothing behind in the working directory (ORT saves a debug copy there when its symbolic pass gives up)."""
    from pathlib import Path

    make_run("lite8", model="efficientnet_lite0+mobilenet_v2", pretrained=True, size=64)
    monkeypatch.chdir(home.home)
    bundle = export_run("lite8", home.home / "lite8-int8", workspace=home, engine=engine, int8=True, force=True)
    assert bundle.manifest["int8"] is True and bundle.manifest["int8_report"]["n"] > 0
    assert not Path("sym_shape_infer_temp.onnx").exists() and not list(Path().glob("*.data"))
