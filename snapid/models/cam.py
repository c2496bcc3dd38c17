"""Where the model looked: class activation maps (CAM) for a linear head on pooled features, Grad-CAM for the rest.

A linear head over globally average-pooled features is linear in every cell of the last feature map:
``logit_c = w_c · mean_hw F[:, h, w] + b_c = mean_hw (w_c · F[:, h, w]) + b_c``. So the map ``w_c · F`` (one
number per cell) is exactly each cell's share of the class's logit, computed with no gradients. Fused backbones
(``a+b``) concatenate each part's pooled features, so the head's row splits into one slice per part and
``logit_c = Σ_p mean(w_c,p · F_p) + b_c``: each part's map is exact, and they are summed on a common grid (the
finest; a coarser one is resized bilinearly, so only that resizing is approximate; equal grids stay exact).

Which tensor is "the last feature map" is found by trying the usual places (timm's ``forward_features``,
torchvision's ``features``, a ResNet's layers, a custom CNN's ``blocks``) and keeping the first whose spatial mean
equals the backbone's pooled output on a test input. Backbones with layers after the pooling (VGG's FC6/FC7,
MobileNetV3's hidden FC, ConvNeXt's LayerNorm) and MLP heads fail that test: they get Grad-CAM (torch, gradients,
for reports) and their bundles say that explain is not available.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FeatureMap = Callable[[Tensor], Tensor]   # N x 3 x H x W normalised images → N x D x h x w
CAM_OUTPUT = "cam"


def _resnet_map(m: nn.Module) -> FeatureMap:
    def run(x: Tensor) -> Tensor:
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return run


def _candidates(backbone: nn.Module) -> list[FeatureMap]:
    found: list[FeatureMap] = []
    if hasattr(backbone, "forward_features") and callable(backbone.forward_features):  # timm
        found.append(backbone.forward_features)
    if isinstance(getattr(backbone, "features", None), nn.Module):  # torchvision MobileNet, EfficientNet, VGG...
        found.append(backbone.features)
    if all(hasattr(backbone, a) for a in ("conv1", "bn1", "maxpool", "layer1", "layer4")):  # torchvision ResNet
        found.append(_resnet_map(backbone))
    if isinstance(getattr(backbone, "blocks", None), nn.Module) and hasattr(backbone, "pool"):  # custom_cnn
        found.append(backbone.blocks)
    return found


@torch.no_grad()
def feature_map_of(backbone: nn.Module, size: int) -> FeatureMap | None:
    """The function giving ``backbone``'s last feature map, checked: its spatial mean must be the pooled
    features the backbone returns (on a seeded random input of ``size`` px); None when no candidate is."""
    was_training = backbone.training
    backbone.eval()
    try:
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        pooled = backbone(x)
        for candidate in _candidates(backbone):
            try:
                fmap = candidate(x)
            except Exception:  # noqa: BLE001 (any failure only rules the candidate out)
                continue
            if not isinstance(fmap, Tensor) or fmap.ndim != 4 or fmap.shape[:2] != pooled.shape:
                continue
            scale = pooled.abs().max().clamp_min(1e-6)
            if ((fmap.mean(dim=(2, 3)) - pooled).abs().max() / scale) < 1e-4:
                return candidate
        return None
    finally:
        backbone.train(was_training)


def linear_layer(head: nn.Module) -> nn.Linear | None:
    """The head's Linear when the head is linear (Dropout + Linear, or a bare Linear); None for an MLP."""
    layers = [m for m in (head if isinstance(head, nn.Sequential) else [head])
              if not isinstance(m, nn.Dropout | nn.Identity | nn.Flatten)]
    return layers[0] if len(layers) == 1 and isinstance(layers[0], nn.Linear) else None


class CamNet(nn.Module):
    """The classifier with a second output: images → (logits, cam), cam N x C x h x w the class activation map of
    every class (no bias: a constant per class changes no map). Exported as one ONNX graph with outputs
    "logits" and "cam"; ``logits`` are the classifier's own."""

    def __init__(self, model: nn.Module, parts: list[FeatureMap], linear: nn.Linear,
                 scale: Tensor | None = None, shift: Tensor | None = None, *, embedding: bool = False):
        super().__init__()
        self.model, self.linear = model, linear
        self._maps = list(parts)
        self.scale, self.shift = scale, shift   # a fused backbone's per-part re-normalisation (parts x 3)
        self.embedding = embedding              # also return the pooled features: (logits, embedding, cam)

    @property
    def head(self) -> nn.Module:
        """The classifier's head (its Linear is ``linear``), as on the classifier itself."""
        return self.model.head

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        fmaps = [fn(_part_input(x, i, self.scale, self.shift)) for i, fn in enumerate(self._maps)]  # N x D_p x h x w
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in fmaps], dim=1)  # = the backbone's output (checked)
        logits, cam = self.linear(pooled), class_maps(fmaps, self.linear.weight)
        return (logits, pooled, cam) if self.embedding else (logits, cam)


def _part_input(x: Tensor, i: int, scale: Tensor | None, shift: Tensor | None) -> Tensor:
    """The input of part ``i`` of a fused backbone (re-normalised to its own mean/std), or ``x`` itself."""
    return x if scale is None else x * scale[i].view(1, 3, 1, 1) + shift[i].view(1, 3, 1, 1)


def class_maps(fmaps: list[Tensor], weight: Tensor) -> Tensor:
    """N x C x h x w: Σ_p w_c,p · F_p per cell, each part's map resized (bilinear) to the finest grid."""
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=__name__)  # grids: fixed per size
    maps, start = [], 0
    for fmap in fmaps:
        dim = fmap.shape[1]
        maps.append(torch.einsum("cd,ndhw->nchw", weight[:, start:start + dim], fmap))
        start += dim
    grid = max(tuple(m.shape[-2:]) for m in maps)
    out = maps[0] if tuple(maps[0].shape[-2:]) == grid else F.interpolate(maps[0], size=grid, mode="bilinear",
                                                                          align_corners=False)
    for m in maps[1:]:
        out = out + (m if tuple(m.shape[-2:]) == grid else F.interpolate(m, size=grid, mode="bilinear",
                                                                          align_corners=False))
    return out


def cam_model(model: nn.Module, *, embedding: bool = False, size: int | None = None) -> tuple[CamNet | None, str]:
    """(CamNet for ``model``, "") when its CAM is exact, else (None, why not). ``model``: a snapid Classifier;
    ``embedding``: the CamNet also returns the pooled features, between the logits and the maps; ``size``: the
    input size the checks run at (default: the backbone's)."""
    if not hasattr(model, "backbone"):
        return None, "an ensemble mixes the answers of several models"
    linear = linear_layer(getattr(model, "head", nn.Identity()))
    if linear is None:
        return None, f"the {getattr(model, 'head_kind', 'non-linear')} head is not one linear layer on pooled features"
    backbone = model.backbone
    size = int(size or (model.spec.input_size if hasattr(model, "spec") else 224))
    if hasattr(backbone, "parts") and hasattr(backbone, "scale"):  # FusedBackbone
        parts = []
        for part in backbone.parts:
            fn = feature_map_of(part, size)
            if fn is None:
                return None, f"a part of the fused backbone ({type(part).__name__}) has layers after its pooling"
            parts.append(fn)
        return CamNet(model, parts, linear, backbone.scale, backbone.shift, embedding=embedding).eval(), ""
    fn = feature_map_of(backbone, size)
    if fn is None:
        return None, f"the backbone ({type(backbone).__name__}) has layers after its global pooling"
    return CamNet(model, [fn], linear, embedding=embedding).eval(), ""


def normalised(cam: Tensor) -> Tensor:
    """N x h x w maps scaled to 0..1 per map (min → 0, max → 1; a flat map is all 0)."""
    low = cam.amin(dim=(-2, -1), keepdim=True)
    span = cam.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(1e-12), torch.zeros_like(cam))


# --- Grad-CAM (reports: any head, any backbone with a feature map) -------------------------------------------------
def grad_cam(model: nn.Module, x: Tensor, classes: Tensor | None = None) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on the last feature map: relu(Σ_d mean_hw(∂logit_c/∂F_d) F_d), N x h x w,
    for ``classes`` (default: the predicted ones). For heads or backbones without an exact CAM; reports only. A
    backbone with no findable feature map raises ValueError."""
    backbone = model.backbone
    size = x.shape[-1]
    parts = list(backbone.parts) if hasattr(backbone, "parts") else [backbone]
    fns = [feature_map_of(p, size) for p in parts]
    if any(fn is None for fn in fns):
        raise ValueError("no feature map to explain: the backbone has layers after its global pooling")
    model.eval()
    with torch.enable_grad():
        fmaps, pooled = [], []
        for i, fn in enumerate(fns):
            scale, shift = (backbone.scale, backbone.shift) if len(parts) > 1 else (None, None)
            fmap = fn(_part_input(x, i, scale, shift)).detach().requires_grad_(True)
            fmaps.append(fmap)
            pooled.append(fmap.mean(dim=(2, 3)))
        logits = model.head(torch.cat(pooled, dim=1))
        chosen = logits.argmax(1) if classes is None else classes
        grads = torch.autograd.grad(logits.gather(1, chosen.view(-1, 1)).sum(), fmaps)
    grid = max((f.shape[-2], f.shape[-1]) for f in fmaps)
    out = 0
    for fmap, grad in zip(fmaps, grads, strict=True):
        m = (grad.mean(dim=(2, 3), keepdim=True) * fmap).sum(1, keepdim=True).detach()
        out = out + (m if tuple(m.shape[-2:]) == grid else F.interpolate(m, size=grid, mode="bilinear",
                                                                           align_corners=False))
    return torch.relu(out[:, 0])


__all__ = ["CAM_OUTPUT", "CamNet", "cam_model", "class_maps", "feature_map_of", "grad_cam", "linear_layer",
           "normalised"]
