"""Detectors from torchvision's detection models on a backbone from snapid's registry.

The backbone is the registry's ``mobilenet_v2`` feature extractor (1280 channels, stride 32), so the
offline ImageNet weights (snapid.models.weights) load with no network, followed by a 1x1 "neck"
down to 256 channels: on 1280 channels Faster R-CNN's box head alone holds 64 M parameters and
RetinaNet's heads 118 M; at 256 the whole detector is a few million on top of the backbone. Its BatchNorm layers become
FrozenBatchNorm2d: detection batches of 2-8 photos are far too small for batch statistics (the
torchvision detection references do the same), and the stem is frozen (torchvision's default of
training only the top blocks).

Every architecture uses labels 1..K with 0 kept for background, and ``num_classes = K + 1``;
Faster R-CNN needs that slot, RetinaNet/FCOS simply never predict label 0, so all archs share one
label convention. The model's transform normalises with ImageNet mean/std itself, and is fixed to
min_size = max_size = ``size`` so an input letterboxed to size x size is never resized again.
Inputs: a list of 3 x S x S float tensors in [0, 1].
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from snapid.errors import SnapidError

ARCHS = ("fasterrcnn_mobilenet_v2", "retinanet_mobilenet_v2", "fcos_mobilenet_v2", "ssdlite_mobilenet_v2",
         "fasterrcnn_mobilenet_v2_s16")
ALIASES = {"fasterrcnn": "fasterrcnn_mobilenet_v2", "retinanet": "retinanet_mobilenet_v2",
           "fcos": "fcos_mobilenet_v2", "ssdlite": "ssdlite_mobilenet_v2",
           "fasterrcnn_s16": "fasterrcnn_mobilenet_v2_s16"}
# SSDLite predicts from two maps, stride 16 (features[:14], 96 channels) and stride 32 (1280), with
# default boxes from these fractions of the input side (map k: scales k and sqrt(k * k+1), ratios 2, 3)
SSD_SCALES = (0.08, 0.3, 0.8)
# Opt-in: Faster R-CNN on mobilenet_v2 features[:14] (stride 16, 96 channels) instead of the whole
# network (stride 32). A stride-32 map puts anchor centres S/32 apart, so objects under about a third
# of the frame get one poorly placed anchor, poor proposals and few positive RoIs. Measured on 42
# generated 160x120 photos of 1-3 shapes, --size 128, 8 epochs: test mAP@0.5 0.04 with stride 32
# (0.18 after 20 epochs) against 0.35 (24-56 px shapes) and 0.59 (40-72 px) with stride 16.
# Experimental: not the default until measured on real photos (fruits); it exports like the others
# (tests/detect_serve/test_export_detector.py).
STRIDE16 = {"fasterrcnn_mobilenet_v2_s16": (14, 96)}   # arch -> (feature blocks kept, their channels)
DEFAULT_ARCH = "fasterrcnn_mobilenet_v2"
FROZEN_BLOCKS = 7          # mobilenet_v2 features[:7] (stride 8 and below) stay frozen
ANCHOR_FRACTIONS = (0.08, 0.16, 0.32, 0.64)   # anchor sides as fractions of the input size
ASPECTS = (0.5, 1.0, 2.0)
NMS_IOU = 0.5              # every arch's own NMS; 0.05 is its score floor (low, for mAP)
NECK_CHANNELS = 256
BOX_HEAD = 256             # Faster R-CNN's box head width (torchvision's default 1024 is for COCO)


def canonical_arch(arch: str) -> str:
    name = ALIASES.get(arch.strip().lower(), arch.strip().lower())
    if name.startswith("yolo:"):
        raise SnapidError(f"--model {arch}: Ultralytics YOLO models are not supported (their weights come from a "
                          "model hub and their ONNX output does not fit snapid's detector bundle); use one of "
                          f"{', '.join(ARCHS)}", code="unknown_model", status=400)
    if name not in ARCHS:
        raise SnapidError(f"unknown detector {arch!r}; known: {', '.join(ARCHS)} (or {', '.join(ALIASES)})",
                          code="unknown_model", status=400)
    return name


def anchor_sizes(size: int) -> tuple[int, ...]:
    """Anchor sides that scale with the input, so a 128 px test model and a 416 px one both cover
    objects from small to nearly the whole frame."""
    return tuple(max(8, round(size * f)) for f in ANCHOR_FRACTIONS)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by FrozenBatchNorm2d holding the same statistics (in place)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def mobilenet_v2_features(pretrained: bool) -> nn.Sequential:
    """The registry's mobilenet_v2 feature blocks with BatchNorm frozen and the stem frozen."""
    from snapid.models import factory

    classifier = factory.create("mobilenet_v2", 1, pretrained=pretrained)
    features = freeze_batchnorm(classifier.backbone.features)
    for block in list(features)[:FROZEN_BLOCKS]:
        for p in block.parameters():
            p.requires_grad_(False)
    return features


class TwoScaleFeatures(nn.Module):
    """mobilenet_v2 features as the two maps SSDLite predicts from: stride 16 and stride 32."""

    def __init__(self, features: nn.Sequential, split: int = 14):
        super().__init__()
        self.low, self.high = features[:split], features[split:]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        low = self.low(x)
        return OrderedDict([("0", low), ("1", self.high(low))])


def mobilenet_v2_backbone(pretrained: bool, blocks: int | None = None, channels: int = 1280) -> nn.Module:
    """The registry's mobilenet_v2 features (the first ``blocks`` of them when given), frozen BN and stem,
    then the 256-channel neck (N x 256 x S/32 x S/32, or S/16 with blocks=14)."""
    features = mobilenet_v2_features(pretrained)
    if blocks is not None:
        features = features[:blocks]
    neck = nn.Sequential(nn.Conv2d(channels, NECK_CHANNELS, 1), nn.ReLU(inplace=True))
    backbone = nn.Sequential(features, neck)
    backbone.out_channels = NECK_CHANNELS
    return backbone


def build_detector(arch: str, num_classes: int, *, pretrained_backbone: bool = True, size: int = 320) -> nn.Module:
    """A torchvision detection model; ``num_classes`` counts background (K object classes → K + 1)."""
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    arch = canonical_arch(arch)
    if num_classes < 2:
        raise SnapidError(f"num_classes={num_classes}: a detector needs background plus at least one class",
                          code="bad_config", status=400)
    if not 64 <= size <= 1536:
        raise SnapidError(f"--size {size}: expected 64 to 1536 pixels", code="bad_config", status=400)
    if arch == "ssdlite_mobilenet_v2":
        return _ssdlite(num_classes, size, pretrained_backbone)
    blocks, channels = STRIDE16.get(arch, (None, 1280))
    backbone = mobilenet_v2_backbone(pretrained_backbone, blocks, channels)
    common = dict(min_size=size, max_size=size)
    sizes = anchor_sizes(size)
    if arch.startswith("fasterrcnn_"):
        anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ASPECTS,))
        pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
        # fewer proposals than the COCO defaults (2000/1000): a few objects per photo, CPU-friendly
        box_head = TwoMLPHead(NECK_CHANNELS * 7 * 7, BOX_HEAD)
        return FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=pool,
                          box_head=box_head, box_predictor=FastRCNNPredictor(BOX_HEAD, num_classes),
                          rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
                          rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
                          box_batch_size_per_image=128, box_detections_per_img=50,
                          box_score_thresh=0.05, box_nms_thresh=NMS_IOU, **common)
    if arch == "retinanet_mobilenet_v2":
        anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ASPECTS,))
        return RetinaNet(backbone, num_classes=num_classes, anchor_generator=anchors, detections_per_img=50,
                         score_thresh=0.05, nms_thresh=NMS_IOU, **common)
    anchors = AnchorGenerator(sizes=((sizes[1],),), aspect_ratios=((1.0,),))   # FCOS: one anchor per location
    return FCOS(backbone, num_classes=num_classes, anchor_generator=anchors, detections_per_img=50,
                score_thresh=0.05, nms_thresh=NMS_IOU, **common)


def _ssdlite(num_classes: int, size: int, pretrained_backbone: bool) -> nn.Module:
    """torchvision's SSD with SSDLite heads (depthwise-separable convolutions) on two mobilenet_v2 maps."""
    from functools import partial

    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    anchors = DefaultBoxGenerator([[2, 3], [2, 3]], scales=list(SSD_SCALES))
    # the heads are new: trainable BatchNorm with torchvision's SSDLite settings
    head = SSDLiteHead([96, 1280], anchors.num_anchors_per_location(), num_classes,
                       partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))
    return SSD(TwoScaleFeatures(mobilenet_v2_features(pretrained_backbone)), anchors, (size, size), num_classes,
               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], head=head, score_thresh=0.05,
               nms_thresh=NMS_IOU, detections_per_img=50, topk_candidates=300)


def detector_config(arch: str, num_classes: int, size: int) -> dict:
    """What a checkpoint records to rebuild the architecture (no weights)."""
    return {"arch": canonical_arch(arch), "num_classes": int(num_classes), "size": int(size),
            "backbone": "mobilenet_v2", "neck_channels": NECK_CHANNELS, "normalizes_input": True,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def detector_from_config(config: dict) -> nn.Module:
    """The architecture ``detector_config`` describes, without pretrained weights (a checkpoint follows)."""
    try:
        return build_detector(config["arch"], int(config["num_classes"]), pretrained_backbone=False,
                              size=int(config["size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapidError(f"detector config {config!r} is incomplete ({exc})", code="bad_checkpoint",
                          status=422) from None


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def detect(model: nn.Module, batch: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Raw detections (boxes in the input frame, scores, labels) for a list of 3 x S x S tensors."""
    model.eval()
    return model(batch)
