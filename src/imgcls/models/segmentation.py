"""Semantic segmentation: a class score for every pixel, from a classification backbone's stages.

- FCN: Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation" (2015,
  arXiv:1411.4038). A classifier made fully convolutional scores classes on its stride-32 map;
  learnable transposed convolutions, initialised to bilinear interpolation, bring the scores back
  to the input's size. FCN-32s does that in one x32 step; FCN-16s first adds scores read from the
  stride-16 stage ("skip"), FCN-8s also from the stride-8 stage, so the fine layers say *where*
  and the deep ones *what* (the paper's Section 4.2, Figure 3). `SkipFCN`: `fcn8s`, `fcn16s`,
  `fcn32s` on any registered classifier that declares stages at stride 8, 16 and 32
  (`backbone="resnet34"`, ...); `fcn8s_efficientnet_lite0..2`.
- torchvision's FCN: a ResNet dilated to stride 8 (`replace_stride_with_dilation=[False, True,
  True]`), a 3x3 conv head (`FCNHead`) on layer4 and a bilinear x8 resize: `fcn_resnet50/101`.
- DeepLabV3: Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic Image
  Segmentation" (2017, arXiv:1706.05587). Atrous spatial pyramid pooling (`ASPP`: a 1x1 conv, three
  3x3 convs dilated 12, 24, 36, and the image's mean) on the stride-8 (ResNet) or stride-16
  (MobileNetV3) map: `deeplabv3_resnet50`, `deeplabv3_mobilenet_v3_large`.
- LR-ASPP: Howard et al., "Searching for MobileNetV3" (2019, arXiv:1905.02244), Section 6.4: the
  last map through a 1x1 conv gated by its global mean, upsampled to the stride-8 map and added to
  class scores read from that map: `lraspp_mobilenet_v3_large`, `lraspp_efficientnet_lite0..2`.

The five torchvision models have torchvision's module names (`backbone.*` as its
IntermediateLayerGetter keeps them, `classifier.*`, `aux_classifier.*`) and numerics, so its
COCO-with-VOC-labels weights load with `strict=True`; tests/models/test_seg_parity.py proves keys and
outputs against ../shared/fixtures/torchvision_seg_parity.json. The contract all of them answer
(a dict with "out" and, where built with `aux_loss=True`, "aux") is `SegmenterMixin` (base.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.base import FeatureInfo, Paper, SegmenterMixin, check_num_classes
from imgcls.models.layers import bilinear_upsampling, score_conv
from imgcls.models.registry import create_model, register_model
from imgcls.models.seg_parts import (DeepLabHead, FCNHead, LRASPPHead, backbone_maps, classifier_backbone, fit_to,
                                     flat_stages, resize_to, stage_at)


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------

class SimpleSegmentation(SegmenterMixin, nn.Module):
    """torchvision's FCN and DeepLabV3 (its _SimpleSegmentationModel): `classifier` on the deepest tap,
    `aux_classifier` (an FCNHead, when built with aux_loss) on the other, each resized bilinearly to
    the input. `taps` are (deepest, aux) backbone maps as FeatureInfo, names relative to `backbone`."""

    classifier_name = "classifier.4"

    def __init__(self, backbone: nn.Module, taps: Sequence[FeatureInfo], head: type[nn.Module], *,
                 num_classes: int, aux_loss: bool) -> None:
        super().__init__()
        check_num_classes(num_classes, type(self).__name__)
        out, aux = taps
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = head(out.channels, num_classes)
        self.aux_classifier = FCNHead(aux.channels, num_classes) if aux_loss else None
        self.extra_head_names = ("aux_classifier.4",) if aux_loss else ()
        self.taps = (out.module, aux.module) if aux_loss else (out.module,)
        self.feature_info = tuple(FeatureInfo(f"backbone.{f.module}", f.channels, f.reduction)
                                  for f in (taps if aux_loss else taps[:1]))[::-1]
        self.min_input_size = getattr(backbone, "min_input_size", self.min_input_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = backbone_maps(self.backbone, x, self.taps)
        result = {"out": resize_to(self.classifier(maps[0]), x.shape[-2:])}
        if self.aux_classifier is not None:
            result["aux"] = resize_to(self.aux_classifier(maps[1]), x.shape[-2:])
        return result


class LRASPP(SegmenterMixin, nn.Module):
    """LR-ASPP on a backbone's stride-8 map (`low`) and its deepest map (`high`), resized to the input."""

    classifier_name = "classifier.high_classifier"
    extra_head_names = ("classifier.low_classifier",)

    def __init__(self, backbone: nn.Module, low: FeatureInfo, high: FeatureInfo, *, num_classes: int,
                 inter_channels: int = 128) -> None:
        super().__init__()
        check_num_classes(num_classes, type(self).__name__)
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = LRASPPHead(low.channels, high.channels, num_classes, inter_channels)
        self.taps = (low.module, high.module)
        self.feature_info = tuple(FeatureInfo(f"backbone.{f.module}", f.channels, f.reduction) for f in (low, high))
        self.min_input_size = getattr(backbone, "min_input_size", self.min_input_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low, high = backbone_maps(self.backbone, x, self.taps)
        return {"out": resize_to(self.classifier(low, high), x.shape[-2:])}


class SkipFCN(SegmenterMixin, nn.Module):
    """FCN-32s, -16s or -8s (`stride`) on a classifier backbone with stages at stride 8, 16 and 32.

    Layer names are the reference Caffe nets': `score_fr` scores the stride-32 map (the paper's
    convolutionalised fc7); FCN-16s adds `upscore2` (x2) + `score_pool4` (the stride-16 stage's
    scores), FCN-8s then `upscore_pool4` (x2) + `score_pool3` (stride 8); `upscore{stride}` brings the
    finest sum to the input's size. Every upsampling is a learnable transposed convolution initialised
    to bilinear interpolation (`bilinear_upsampling`); the score layers start at zero, as the paper's,
    so an untrained FCN-8s predicts what its FCN-32s part does. Maps of odd sizes are fitted with
    `fit_to` at each sum and at the end: "out" has exactly the input's size."""

    classifier_name = "score_fr"
    zero_init_scores = True

    def __init__(self, backbone: nn.Module, *, stride: int, num_classes: int, name: str) -> None:
        super().__init__()
        check_num_classes(num_classes, name)
        if stride not in (8, 16, 32):
            raise ConfigError(f"{name}: an FCN's output stride is 8, 16 or 32, got {stride}")
        deepest = backbone.feature_info[-1]
        if deepest.reduction != 32:
            raise ConfigError(f"{name} reads the backbone's deepest stage at stride 32; {type(backbone).__name__}'s "
                              f"{deepest.module} is at stride {deepest.reduction} (FCN needs stages at strides 8, "
                              "16 and 32: a backbone without dilation)")
        skips = [stage_at(backbone, r, model=name) for r in (8, 16) if r >= stride]  # shallow to deep
        self.num_classes, self.stride = num_classes, stride
        self.backbone = backbone
        self.score_fr = score_conv(deepest.channels, num_classes, zero=True)
        heads = ["score_fr"]
        if stride <= 16:
            pool4 = skips[-1]
            self.upscore2 = bilinear_upsampling(num_classes, 2)
            self.score_pool4 = score_conv(pool4.channels, num_classes, zero=True)
            heads += ["upscore2", "score_pool4"]
        if stride == 8:
            self.upscore_pool4 = bilinear_upsampling(num_classes, 2)
            self.score_pool3 = score_conv(skips[0].channels, num_classes, zero=True)
            heads += ["upscore_pool4", "score_pool3"]
        self.add_module(f"upscore{stride}", bilinear_upsampling(num_classes, stride))
        self.extra_head_names = (*heads[1:], f"upscore{stride}")
        stages = (*skips, deepest)
        self.taps = tuple(f.module for f in stages)
        self.feature_info = tuple(FeatureInfo(f"backbone.{f.module}", f.channels, f.reduction) for f in stages)
        self.min_input_size = backbone.min_input_size

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        *skips, deepest = backbone_maps(self.backbone, x, self.taps)
        score = self.score_fr(deepest)
        if self.stride <= 16:
            pool4 = skips[-1]
            score = fit_to(self.upscore2(score), pool4.shape[-2:]) + self.score_pool4(pool4)
        if self.stride == 8:
            pool3 = skips[0]
            score = fit_to(self.upscore_pool4(score), pool3.shape[-2:]) + self.score_pool3(pool3)
        up = self.get_submodule(f"upscore{self.stride}")
        return {"out": fit_to(up(score), x.shape[-2:])}


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


# torchvision's models: name -> (head, backbone). ResNets are dilated to stride 8 and read layer4
# ("out") and layer3 ("aux"); MobileNetV3-Large is dilated in its last stage (stride 16) and read at
# its last block ("out", LR-ASPP's "high") and at the first block at stride 8 ("aux", "low").
TORCHVISION_SEGMENTATION: dict[str, tuple[str, str]] = {
    "fcn_resnet50": ("fcn", "resnet50"),
    "fcn_resnet101": ("fcn", "resnet101"),
    "deeplabv3_resnet50": ("deeplabv3", "resnet50"),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3", "mobilenet_v3_large"),
    "lraspp_mobilenet_v3_large": ("lraspp", "mobilenet_v3_large"),
}
HEADS: dict[str, type[nn.Module]] = {"fcn": FCNHead, "deeplabv3": DeepLabHead}


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "fcn": Paper("Long, Shelhamer, Darrell", "Fully Convolutional Networks for Semantic Segmentation", 2015,
                 "arXiv:1411.4038"),
    "deeplabv3": Paper("Chen, Papandreou, Schroff, Adam", "Rethinking Atrous Convolution for Semantic Image "
                       "Segmentation", 2017, "arXiv:1706.05587"),
    "lraspp": Paper("Howard et al.", "Searching for MobileNetV3", 2019, "arXiv:1905.02244"),
}


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def _torchvision_backbone(backbone: str) -> tuple[nn.Module, FeatureInfo, FeatureInfo]:
    """(backbone, deepest tap, aux/low tap) as torchvision builds them for its segmentation models."""
    if backbone.startswith("resnet"):
        net = classifier_backbone(backbone, replace_stride_with_dilation=(False, True, True))
        return net, net.feature_info[-1], net.feature_info[-2]  # layer4, layer3: both at stride 8
    features = create_model(backbone, num_classes=0, dilated=True).features
    stages = flat_stages(features)
    return features, stages[-1], next(f for f in stages if f.reduction == 8)


def _torchvision(name: str, *, num_classes: int, aux_loss: bool = False) -> nn.Module:
    head, backbone = TORCHVISION_SEGMENTATION[name]
    net, deepest, stride8 = _torchvision_backbone(backbone)
    if head == "lraspp":  # no auxiliary head: its builder takes no aux_loss
        return LRASPP(net, stride8, deepest, num_classes=num_classes)
    return SimpleSegmentation(net, (deepest, stride8), HEADS[head], num_classes=num_classes, aux_loss=aux_loss)


def _lraspp(backbone: str, *, num_classes: int, **backbone_kw) -> LRASPP:
    net = classifier_backbone(backbone, **backbone_kw)
    return LRASPP(net, stage_at(net, 8, model=f"lraspp_{backbone}"), net.feature_info[-1], num_classes=num_classes)


def _fcn(stride: int, backbone: str, *, num_classes: int, **backbone_kw) -> SkipFCN:
    return SkipFCN(classifier_backbone(backbone, **backbone_kw), stride=stride, num_classes=num_classes,
                   name=f"fcn{stride}s on {backbone}")


@register_model(task="segmentation")
def fcn_resnet50(*, num_classes: int = 21, aux_loss: bool = False) -> SimpleSegmentation:
    """FCN (Long et al. 2015) as torchvision builds it: ResNet-50 dilated to stride 8, FCNHead on layer4
    (aux_loss: another on layer3); torchvision's keys, loads its COCO-with-VOC-labels weights."""
    return _torchvision("fcn_resnet50", num_classes=num_classes, aux_loss=aux_loss)


@register_model(task="segmentation")
def fcn_resnet101(*, num_classes: int = 21, aux_loss: bool = False) -> SimpleSegmentation:
    """FCN (Long et al. 2015) as torchvision builds it on ResNet-101 dilated to stride 8; torchvision's keys."""
    return _torchvision("fcn_resnet101", num_classes=num_classes, aux_loss=aux_loss)


@register_model(task="segmentation")
def deeplabv3_resnet50(*, num_classes: int = 21, aux_loss: bool = False) -> SimpleSegmentation:
    """DeepLabV3 (Chen et al. 2017) as torchvision builds it: ASPP on ResNet-50 dilated to stride 8
    (aux_loss: an FCNHead on layer3); torchvision's keys."""
    return _torchvision("deeplabv3_resnet50", num_classes=num_classes, aux_loss=aux_loss)


@register_model(task="segmentation")
def deeplabv3_mobilenet_v3_large(*, num_classes: int = 21, aux_loss: bool = False) -> SimpleSegmentation:
    """DeepLabV3 (Chen et al. 2017) as torchvision builds it: ASPP on MobileNetV3-Large's last block
    (stride 16, dilated), aux_loss: an FCNHead on its first stride-8 block; torchvision's keys."""
    return _torchvision("deeplabv3_mobilenet_v3_large", num_classes=num_classes, aux_loss=aux_loss)


@register_model(task="segmentation")
def lraspp_mobilenet_v3_large(*, num_classes: int = 21) -> LRASPP:
    """LR-ASPP (Howard et al. 2019, Section 6.4) as torchvision builds it on MobileNetV3-Large (last stage
    dilated to stride 16; low-level map from its first stride-8 block); torchvision's keys."""
    return _torchvision("lraspp_mobilenet_v3_large", num_classes=num_classes)


@register_model(task="segmentation")
def lraspp_efficientnet_lite0(*, num_classes: int = 21, **kw) -> LRASPP:
    """LR-ASPP (Howard et al. 2019) on EfficientNet-Lite0: low-level map at stride 8 (features.3),
    high-level at stride 32 (features.8); `kw` go to the backbone (tf_same, drop_connect_rate)."""
    return _lraspp("efficientnet_lite0", num_classes=num_classes, **kw)


@register_model(task="segmentation")
def lraspp_efficientnet_lite1(*, num_classes: int = 21, **kw) -> LRASPP:
    """LR-ASPP (Howard et al. 2019) on EfficientNet-Lite1, as lraspp_efficientnet_lite0."""
    return _lraspp("efficientnet_lite1", num_classes=num_classes, **kw)


@register_model(task="segmentation")
def lraspp_efficientnet_lite2(*, num_classes: int = 21, **kw) -> LRASPP:
    """LR-ASPP (Howard et al. 2019) on EfficientNet-Lite2, as lraspp_efficientnet_lite0."""
    return _lraspp("efficientnet_lite2", num_classes=num_classes, **kw)


@register_model(task="segmentation")
def fcn8s(*, num_classes: int = 21, backbone: str = "vgg16", **backbone_kw) -> SkipFCN:
    """FCN-8s (Long et al. 2015, Figure 3) on any registered classifier with stages at stride 8, 16 and 32
    (`backbone`, the paper's VGG-16 by default; `backbone_kw` go to its builder)."""
    return _fcn(8, backbone, num_classes=num_classes, **backbone_kw)


@register_model(task="segmentation")
def fcn16s(*, num_classes: int = 21, backbone: str = "vgg16", **backbone_kw) -> SkipFCN:
    """FCN-16s (Long et al. 2015): scores at stride 32 plus a skip from the stride-16 stage, x16 upsampling."""
    return _fcn(16, backbone, num_classes=num_classes, **backbone_kw)


@register_model(task="segmentation")
def fcn32s(*, num_classes: int = 21, backbone: str = "vgg16", **backbone_kw) -> SkipFCN:
    """FCN-32s (Long et al. 2015): scores at stride 32, one x32 upsampling, no skips."""
    return _fcn(32, backbone, num_classes=num_classes, **backbone_kw)


@register_model(task="segmentation")
def fcn8s_efficientnet_lite0(*, num_classes: int = 21, **kw) -> SkipFCN:
    """FCN-8s (Long et al. 2015) on EfficientNet-Lite0: skips from features.3 (stride 8) and features.5 (16),
    scores on the 1280-wide features.8 (32); `kw` go to the backbone (tf_same, drop_connect_rate)."""
    return _fcn(8, "efficientnet_lite0", num_classes=num_classes, **kw)


@register_model(task="segmentation")
def fcn8s_efficientnet_lite1(*, num_classes: int = 21, **kw) -> SkipFCN:
    """FCN-8s (Long et al. 2015) on EfficientNet-Lite1, as fcn8s_efficientnet_lite0."""
    return _fcn(8, "efficientnet_lite1", num_classes=num_classes, **kw)


@register_model(task="segmentation")
def fcn8s_efficientnet_lite2(*, num_classes: int = 21, **kw) -> SkipFCN:
    """FCN-8s (Long et al. 2015) on EfficientNet-Lite2, as fcn8s_efficientnet_lite0."""
    return _fcn(8, "efficientnet_lite2", num_classes=num_classes, **kw)
