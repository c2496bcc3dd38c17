"""Architectures only: each builder(pretrained) returns (feature extractor N×3×H×W → N×D, D, parameter-group
modules stem → top). Pretrained weights are loaded afterwards by ``snapid.models.weights`` so downloads are
controlled and failures are typed. Knows no registry: the table in ``registry.py`` points at these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from snapid.models.spec import TIMM_PREFIX, BackboneSpec, Builder


class _Params(nn.Module):
    """Holds a group's parameters (same objects) so timm groups fit the list-of-modules builder contract."""

    def __init__(self, params: Sequence[nn.Parameter]):
        super().__init__()
        for i, p in enumerate(params):
            self.register_parameter(f"p{i}", p)


def _split(seq: Sequence, k: int) -> list[list]:
    """``seq`` into at most k contiguous, nearly equal, non-empty chunks (stem → top order kept)."""
    k = max(1, min(k, len(seq)))
    q, r = divmod(len(seq), k)
    out, i = [], 0
    for j in range(k):
        n = q + (1 if j < r else 0)
        out.append(list(seq[i:i + n]))
        i += n
    return out


def timm_model(name: str) -> Builder:
    def build(pretrained: bool) -> tuple[nn.Module, int, list[nn.Module]]:
        import timm
        from timm.models import group_parameters

        model = timm.create_model(name[len(TIMM_PREFIX):], pretrained=False, num_classes=0)
        dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        params = dict(model.named_parameters())
        try:  # timm's own stem → blocks → head grouping (used for layer-wise lr decay)
            ordered = [names for _, names in sorted(group_parameters(model, model.group_matcher(coarse=True)).items())]
        except (AttributeError, NotImplementedError):
            ordered = [[n for n, _ in child.named_parameters(prefix=cname)]
                       for cname, child in model.named_children()]
            ordered = [g for g in ordered if g]
        groups = [_Params([params[n] for chunk in part for n in chunk]) for part in _split(ordered, 5)]
        return model, dim, groups

    return build


# --- torchvision ----------------------------------------------------------------------------
def _tv(arch: str, **kw) -> nn.Module:
    import torchvision.models as tvm

    return tvm.get_model(arch, weights=None, **kw)  # weights=None: never an implicit download


def _slices(seq: nn.Sequential, cuts: Sequence[int]) -> list[nn.Module]:
    bounds = [0, *cuts, len(seq)]
    return [seq[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def resnet(arch: str) -> Builder:
    def build(pretrained: bool):
        m = _tv(arch)
        dim, m.fc = m.fc.in_features, nn.Identity()
        return m, dim, [nn.ModuleList([m.conv1, m.bn1]), m.layer1, m.layer2, m.layer3, m.layer4]
    return build


def _by_pools(features: nn.Sequential) -> list[nn.Module]:
    cuts = [i + 1 for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)][:-1]
    return _slices(features, cuts)


def vgg_like(arch: str) -> Builder:
    def build(pretrained: bool):
        # keep the pretrained FC6/FC7 (4096-d features); drop only the 1000-way Linear
        m = _tv(arch)
        dim, m.classifier[6] = m.classifier[6].in_features, nn.Identity()
        return m, dim, [*_by_pools(m.features), m.classifier]
    return build


def googlenet(pretrained: bool):
    # transform_input=True always: the ImageNet weights expect it, and scratch/pretrained must match
    m = _tv("googlenet", aux_logits=False, init_weights=False, transform_input=True)
    dim, m.fc = m.fc.in_features, nn.Identity()
    groups = [[m.conv1, m.conv2, m.conv3], [m.inception3a, m.inception3b],
              [m.inception4a, m.inception4b, m.inception4c], [m.inception4d, m.inception4e],
              [m.inception5a, m.inception5b]]
    return m, dim, [nn.ModuleList(g) for g in groups]


def mobilenet_v2(pretrained: bool):
    m = _tv("mobilenet_v2")
    dim, m.classifier = m.classifier[1].in_features, nn.Identity()
    return m, dim, _slices(m.features, [2, 4, 7, 14])


def mobilenet_v3_large(pretrained: bool):
    m = _tv("mobilenet_v3_large")
    dim, m.classifier[3] = m.classifier[3].in_features, nn.Identity()  # keep the pretrained 1280-d hidden FC
    *low, top = _slices(m.features, [2, 4, 7, 13])
    return m, dim, [*low, nn.ModuleList([top, m.classifier])]


def efficientnet(arch: str) -> Builder:
    def build(pretrained: bool):
        m = _tv(arch)
        dim, m.classifier = m.classifier[1].in_features, nn.Identity()
        return m, dim, _slices(m.features, [2, 4, 5, 7])
    return build


def convnext(arch: str) -> Builder:
    def build(pretrained: bool):
        m = _tv(arch)
        dim, m.classifier[2] = m.classifier[2].in_features, nn.Identity()  # keep the LayerNorm
        *low, top = _slices(m.features, [2, 4, 6])
        return m, dim, [*low, nn.ModuleList([top, m.classifier])]
    return build


# --- fused backbones ------------------------------------------------------------------------
class FusedBackbone(nn.Module):
    """Several backbones on one image: each gets the input re-normalised to its own mean/std (an affine map,
    exported into the same ONNX graph), and their pooled features are concatenated."""

    def __init__(self, parts: list[nn.Module], specs: list[BackboneSpec], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.parts = nn.ModuleList(parts)
        scale, shift = [], []
        for spec in specs:  # x_part = (x * std + mean - mean_p) / std_p = x * a + b
            a = [s / sp for s, sp in zip(std, spec.std, strict=True)]
            b = [(m - mp) / sp for m, mp, sp in zip(mean, spec.mean, spec.std, strict=True)]
            scale.append(a)
            shift.append(b)
        # (parts, 3): 2-d, so .to(memory_format=channels_last) on the whole model leaves them alone
        self.register_buffer("scale", torch.tensor(scale), persistent=False)
        self.register_buffer("shift", torch.tensor(shift), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([part(x * self.scale[i].view(1, 3, 1, 1) + self.shift[i].view(1, 3, 1, 1))
                          for i, part in enumerate(self.parts)], dim=1)


def fused(specs: list[BackboneSpec], builders: list[Builder], mean: Sequence[float], std: Sequence[float]
          ) -> tuple[nn.Module, int, list[nn.Module]]:
    """The parts (their specs and builders, in order) as one backbone fed with ``mean``/``std``."""
    built = [builder(False) for builder in builders]
    backbone = FusedBackbone([b[0] for b in built], specs, mean, std)
    # group k of the fused model: group k of every part (counted from the top), so unfreezing the top n
    # groups unfreezes the top n of each part
    depth = max(len(b[2]) for b in built)
    groups = [nn.ModuleList([b[2][len(b[2]) - depth + k] for b in built if len(b[2]) - depth + k >= 0])
              for k in range(depth)]
    return backbone, sum(b[1] for b in built), groups
