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
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper, SegmenterMixin, check_num_classes, layer_stride
from imgcls.models.layers import bilinear_upsampling, score_conv
from imgcls.models.registry import create_model, register_model, task_of


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def classifier_backbone(name: str, **kwargs) -> nn.Module:
    """The registered classifier `name` as a backbone: built headless, and the top-level modules that
    hold its classifier (and any other class-sized head) replaced by Identity, so every parameter
    left is one its stages use. `kwargs` go to its builder (replace_stride_with_dilation, tf_same, ...)."""
    if task_of(name) != "classification":
        raise ConfigError(f"backbone {name!r} is a {task_of(name)} model; a backbone is a classifier "
                          "(see `imgcls models`)")
    net = create_model(name, num_classes=0, **kwargs)
    if not net.feature_info:
        raise ConfigError(f"{name} declares no feature stages (feature_info) to read maps from")
    for head in (net.classifier_name, *net.extra_head_names):
        top = head.split(".")[0]
        if isinstance(getattr(net, top, None), nn.Module):
            setattr(net, top, nn.Identity())
    return net


def stage_at(backbone: nn.Module, reduction: int, *, model: str) -> FeatureInfo:
    """The deepest stage of `backbone` whose map is at total stride `reduction`."""
    found = [f for f in backbone.feature_info if f.reduction == reduction]
    if not found:
        have = ", ".join(f"{f.module} (stride {f.reduction})" for f in backbone.feature_info)
        raise ConfigError(f"{model} needs a backbone stage at stride {reduction}; {type(backbone).__name__} "
                          f"has {have}")
    return found[-1]


def backbone_maps(backbone: nn.Module, x: torch.Tensor, taps: Sequence[str]) -> list[torch.Tensor]:
    """The backbone's maps at `taps`, in that order: a classifier's stages (`forward_stages`), or the
    outputs of a flat Sequential's blocks (torchvision's trimmed MobileNetV3 `features`), run block by
    block only as far as the deepest tap, as torchvision's IntermediateLayerGetter does."""
    if isinstance(backbone, ClassifierMixin):
        stages = dict(zip(backbone.stage_names, backbone.forward_stages(x)))
        return [stages[t] for t in taps]
    outs: dict[str, torch.Tensor] = {}
    for name, block in backbone.named_children():
        x = block(x)
        if name in taps:
            outs[name] = x
            if len(outs) == len(taps):
                break
    return [outs[t] for t in taps]


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize to `size` (H, W), torchvision's align_corners=False."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def fit_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """`x` cropped, or edge-padded, at its bottom and right to exactly `size` (H, W). An upsampled map
    is aligned at the top-left (position i of a stride-s map covers pixels s*i .. s*i + s - 1), so the
    pixels without a counterpart in an odd-sized map are the last row or column (FCN's Crop layer)."""
    h, w = size
    x = x[..., :h, :w]
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    return F.pad(x, (0, dw, 0, dh), mode="replicate") if dh or dw else x


def _block_stride(block: nn.Module) -> int:
    return max(layer_stride(m) for m in block.modules())


def _flat_stages(features: nn.Sequential) -> list[FeatureInfo]:
    """One FeatureInfo per block of a flat Sequential, named by its index (the total stride after it)."""
    info, reduction = [], 1
    for i, block in enumerate(features):
        reduction *= _block_stride(block)
        info.append(FeatureInfo(str(i), block.out_channels, reduction))
    return info


# ---------------------------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------------------------

class FCNHead(nn.Sequential):
    """torchvision's FCN head: 3x3 conv to a quarter of the width, BN, ReLU, dropout 0.1, 1x1 scores."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(nn.Conv2d(in_channels, inter, 3, padding=1, bias=False), nn.BatchNorm2d(inter), nn.ReLU(),
                         nn.Dropout(0.1), score_conv(inter, num_classes))


class ASPPConv(nn.Sequential):
    """One atrous branch: 3x3 conv dilated by `rate` (padded to keep the size), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, rate: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class ASPPPooling(nn.Sequential):
    """The image-level branch: the map's mean, 1x1 conv, BN, ReLU, spread back over the map."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3, Section 3.3): a 1x1 branch, one 3x3 branch per rate and
    the image-level branch, concatenated and projected to `out_channels` (BN, ReLU, dropout 0.5)."""

    def __init__(self, in_channels: int, rates: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                   nn.BatchNorm2d(out_channels), nn.ReLU())]
        branches += [ASPPConv(in_channels, out_channels, r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """DeepLabV3's head as torchvision builds it: ASPP (rates 12, 24, 36), 3x3 conv, BN, ReLU, 1x1 scores."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(ASPP(in_channels, DEEPLAB_RATES), nn.Conv2d(256, 256, 3, padding=1, bias=False),
                         nn.BatchNorm2d(256), nn.ReLU(), score_conv(256, num_classes))


class LRASPPHead(nn.Module):
    """Lite R-ASPP (MobileNetV3, Section 6.4, torchvision's form): the high-level map through a 1x1 conv
    (BN, ReLU) times a sigmoid gate from its global mean, resized to the low-level map; class scores
    of each (`high_classifier`, `low_classifier`) added."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                 nn.BatchNorm2d(inter_channels), nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = score_conv(low_channels, num_classes)
        self.high_classifier = score_conv(inter_channels, num_classes)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = resize_to(self.cbr(high) * self.scale(high), low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)


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

DEEPLAB_RATES = (12, 24, 36)  # DeepLabV3's atrous rates at output stride 8, which torchvision keeps at 16 too

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
    stages = _flat_stages(features)
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
