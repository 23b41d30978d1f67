"""MobileNet v1, v2 and v3: the depthwise-separable family.

- v1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications" (2017, arXiv:1704.04861) — 3x3 depthwise + 1x1 pointwise pairs, a width
  multiplier alpha (`width_mult`); the resolution multiplier is just the input size.
- v2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018,
  arXiv:1801.04381) — expand 1x1 (ReLU6), depthwise 3x3 (ReLU6), project 1x1 with no activation,
  a residual between the narrow ends; the rows of its Table 2 (t, c, n, s) are the table below.
- v3: Howard et al., "Searching for MobileNetV3" (2019, arXiv:1905.02244) — v2 blocks with
  squeeze-and-excitation (hard-sigmoid gate) and hard-swish in the deeper half; Tables 1 and 2.

v2 and v3 use torchvision's module names (`features.N`, `features.N.conv` / `.block`,
`classifier`), so the official weight files load with `strict=True`. torchvision has no v1: its
names here are ours (`features.N.depthwise/pointwise`, `fc`), in the same style. The v2 and v3
blocks (`InvertedResidual`, `InvertedResidualV3`, `SqueezeExcitation`) live in `layers.py`.
"""
from __future__ import annotations

import torch
from torch import nn

from imgcls.models.base import ClassifierMixin, Paper, init_conv_bn_linear, last_per_resolution
from imgcls.models.layers import (TF_BN_EPS, TF_BN_MOMENTUM, ConvBNAct, InvertedResidual, InvertedResidualV3,
                                  dropout_classifier, linear_classifier, make_divisible)
from imgcls.models.registry import register_model


# ---------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------

class DepthwiseSeparable(nn.Module):
    """MobileNetV1's unit (its Figure 3): 3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int) -> None:
        super().__init__()
        self.out_channels = out_ch
        self.depthwise = ConvBNAct(in_ch, in_ch, 3, stride=stride, groups=in_ch)
        self.pointwise = ConvBNAct(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------

class _MobileNet(ClassifierMixin, nn.Module):
    """What the three versions share: `features`, global average pool, a classifier."""

    min_input_size = (32, 32)  # stride 32 overall: 32 -> 1


class MobileNetV1(_MobileNet):
    """A 3x3 stride-2 stem and 13 depthwise-separable units (the paper's Table 1), pool, `fc`."""

    classifier_name = "fc"

    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, in_chans: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        width = lambda c: make_divisible(c * width_mult)  # noqa: E731  (= int(c * alpha) for the paper's alphas)
        layers: list[nn.Module] = [ConvBNAct(in_chans, width(32), 3, stride=2)]
        in_ch = width(32)
        for c, s in MOBILENET_V1:
            layers.append(DepthwiseSeparable(in_ch, width(c), stride=s))
            in_ch = width(c)
        self.features = nn.Sequential(*layers)
        self.feature_info = last_per_resolution(self.features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_classifier(in_ch, num_classes)
        init_conv_bn_linear(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


class MobileNetV2(_MobileNet):
    """A 3x3 stride-2 stem, the inverted-residual rows of Table 2, a 1x1 conv to 1280, pool, classifier."""

    classifier_name = "classifier.1"

    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        in_ch = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in MOBILENET_V2:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, stride=s if i == 0 else 1, expand_ratio=t))
                in_ch = out_ch
        self.num_features = make_divisible(1280 * max(1.0, width_mult))  # the last layer never narrows
        layers.append(ConvBNAct(in_ch, self.num_features, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.feature_info = last_per_resolution(self.features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = dropout_classifier(self.num_features, num_classes, dropout)
        init_conv_bn_linear(self)


class MobileNetV3(_MobileNet):
    """A hard-swish stem, bneck rows (Tables 1 and 2), a 1x1 conv to 6x the last width, pool, and a
    classifier that keeps the paper's 1x1 "NBN" layer (Linear 1280 or 1024, hard-swish, dropout)
    before the final Linear, so `num_features` is 1280 (large) or 1024 (small).

    `dilated=True` (torchvision's option, what its DeepLabV3 and LR-ASPP backbones use) keeps the
    last stage, the rows from the last strided one on, at stride 16: their depthwise convolutions
    are dilated by 2 instead of strided. Same keys; `feature_info` reports the real strides."""

    classifier_name = "classifier.3"

    def __init__(self, rows: tuple[tuple[int, int, int, int, bool, bool, int], ...], last_channel: int, *,
                 num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, dilated: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        width = lambda c: make_divisible(c * width_mult)  # noqa: E731
        bn = dict(bn_eps=TF_BN_EPS, bn_momentum=TF_BN_MOMENTUM)
        in_ch = width(rows[0][0])
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, stride=2, activation=nn.Hardswish, **bn)]
        last_stage = max(i for i, row in enumerate(rows) if row[-1] > 1)
        for i, (inp, k, exp, out, se, hs, s) in enumerate(rows):
            dilation = 2 if dilated and i >= last_stage else 1
            layers.append(InvertedResidualV3(width(inp), k, width(exp), width(out), use_se=se, hswish=hs, stride=s,
                                             dilation=dilation))
            in_ch = width(out)
        layers.append(ConvBNAct(in_ch, 6 * in_ch, 1, activation=nn.Hardswish, **bn))
        self.features = nn.Sequential(*layers)
        self.feature_info = last_per_resolution(self.features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = width(last_channel)
        self.classifier = nn.Sequential(
            nn.Linear(6 * in_ch, self.num_features), nn.Hardswish(inplace=True), nn.Dropout(dropout, inplace=True),
            linear_classifier(self.num_features, num_classes),
        )
        init_conv_bn_linear(self)


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------

# v1, Table 1 after the stem: (pointwise output width, depthwise stride)
MOBILENET_V1: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)

# v2, Table 2: expansion t, output width c, repeats n, first stride s
MOBILENET_V2: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

# v3, Tables 1 (large) and 2 (small): (input width, kernel, expanded width, output width, SE,
# hard-swish, stride), and the width of the penultimate Linear
MOBILENET_V3: dict[str, tuple[tuple[tuple[int, int, int, int, bool, bool, int], ...], int]] = {
    "mobilenet_v3_large": ((
        (16, 3, 16, 16, False, False, 1),
        (16, 3, 64, 24, False, False, 2),
        (24, 3, 72, 24, False, False, 1),
        (24, 5, 72, 40, True, False, 2),
        (40, 5, 120, 40, True, False, 1),
        (40, 5, 120, 40, True, False, 1),
        (40, 3, 240, 80, False, True, 2),
        (80, 3, 200, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
        (80, 3, 480, 112, True, True, 1),
        (112, 3, 672, 112, True, True, 1),
        (112, 5, 672, 160, True, True, 2),
        (160, 5, 960, 160, True, True, 1),
        (160, 5, 960, 160, True, True, 1),
    ), 1280),
    "mobilenet_v3_small": ((
        (16, 3, 16, 16, True, False, 2),
        (16, 3, 72, 24, False, False, 2),
        (24, 3, 88, 24, False, False, 1),
        (24, 5, 96, 40, True, True, 2),
        (40, 5, 240, 40, True, True, 1),
        (40, 5, 240, 40, True, True, 1),
        (40, 5, 120, 48, True, True, 1),
        (48, 5, 144, 48, True, True, 1),
        (48, 5, 288, 96, True, True, 2),
        (96, 5, 576, 96, True, True, 1),
        (96, 5, 576, 96, True, True, 1),
    ), 1024),
}


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "mobilenet_v1": Paper("Howard et al.",
                          "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
                          2017, "arXiv:1704.04861"),
    "mobilenet_v2": Paper("Sandler, Howard, Zhu, Zhmoginov, Chen",
                          "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018, "arXiv:1801.04381"),
    "mobilenet_v3": Paper("Howard et al.", "Searching for MobileNetV3", 2019, "arXiv:1905.02244"),
}


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

@register_model
def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, in_chans: int = 3,
                 dropout: float = 0.0) -> MobileNetV1:
    """MobileNetV1 (Howard et al. 2017), width multiplier alpha = `width_mult` (1.0: 4.2M parameters,
    0.57 GMACs at 224, the paper's Table 8)."""
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, in_chans=in_chans, dropout=dropout)


@register_model
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018) with torchvision's names; loads the official weights."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout)


def _mobilenet_v3(name: str, *, num_classes: int, width_mult: float = 1.0, dropout: float = 0.2,
                  dilated: bool = False) -> MobileNetV3:
    rows, last = MOBILENET_V3[name]
    return MobileNetV3(rows, last, num_classes=num_classes, width_mult=width_mult, dropout=dropout, dilated=dilated)


@register_model
def mobilenet_v3_large(*, num_classes: int = 1000, **kw) -> MobileNetV3:
    """MobileNetV3-Large (Howard et al. 2019, Table 1) with torchvision's names; loads the official weights."""
    return _mobilenet_v3("mobilenet_v3_large", num_classes=num_classes, **kw)


@register_model
def mobilenet_v3_small(*, num_classes: int = 1000, **kw) -> MobileNetV3:
    """MobileNetV3-Small (Howard et al. 2019, Table 2) with torchvision's names; loads the official weights."""
    return _mobilenet_v3("mobilenet_v3_small", num_classes=num_classes, **kw)
