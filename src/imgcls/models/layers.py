"""Blocks shared by the model families: conv-BN-activation units, squeeze-and-excitation, the
inverted-residual family (MobileNetV2, MobileNetV3, EfficientNet-Lite) and the classifier head.

Attribute names are torchvision's (`conv`/`block`, `fc1`/`fc2`, a Sequential's `.0` conv and `.1`
norm): the official weight files load by key, so renaming any of them breaks `strict=True` loading.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# TensorFlow's BatchNorm defaults, which the reference trainings of MobileNetV3 and EfficientNet used:
# epsilon 1e-3 and decay 0.99 (PyTorch's momentum is 1 - decay)
TF_BN_EPS, TF_BN_MOMENTUM = 1e-3, 0.01


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of `divisor`, never more than 10% down (the reference
    TensorFlow code's rule, kept by torchvision; widths must match for the weights to load)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's 'SAME': the output has ceil(size / stride) positions;
    an odd total puts the extra pixel after (bottom/right), unlike PyTorch's symmetric padding."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Zero a residual branch for whole samples with probability `rate`, scale the kept ones by
    1 / (1 - rate) (stochastic depth: Huang et al. 2016); the identity outside training."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


# ---------------------------------------------------------------------------------------------
# convolution units
# ---------------------------------------------------------------------------------------------

class ConvBNAct(nn.Sequential):
    """Conv (no bias, 'same' padding) -> BatchNorm -> activation; torchvision's Conv2dNormActivation,
    a Sequential so that its keys are `.0` (conv) and `.1` (norm). The MobileNets' unit."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, stride: int = 1, groups: int = 1,
                 dilation: int = 1, activation: type[nn.Module] | None = nn.ReLU, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=(kernel_size - 1) // 2 * dilation,
                      dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_ch


class Conv2dSame(nn.Conv2d):
    """A bias-free nn.Conv2d that keeps ceil(size / stride) positions: with `tf_same`, a strided
    conv pads like TensorFlow's 'SAME' for each input (what the published weights need); otherwise,
    and always at stride 1 (odd kernels: the two paddings agree), symmetrically by (k - 1) // 2."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, groups: int = 1,
                 tf_same: bool = True) -> None:
        self.pad_in_forward = tf_same and stride > 1
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, groups=groups, bias=False,
                         padding=0 if self.pad_in_forward else (kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_in_forward:
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            top, bottom = tf_same_padding(x.shape[-2], kh, sh)
            left, right = tf_same_padding(x.shape[-1], kw, sw)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvBNActSame(nn.Sequential):
    """Conv2dSame -> BatchNorm (TensorFlow's eps/momentum) -> ReLU6 (None: linear); keys `.0`, `.1`.
    EfficientNet-Lite's unit: its weights were trained with TensorFlow's padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, *, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.ReLU6, tf_same: bool = True) -> None:
        layers: list[nn.Module] = [Conv2dSame(in_ch, out_ch, kernel_size, stride=stride, groups=groups, tf_same=tf_same),
                                   nn.BatchNorm2d(out_ch, eps=TF_BN_EPS, momentum=TF_BN_MOMENTUM)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_ch


class SqueezeExcitation(nn.Module):
    """Hu et al., "Squeeze-and-Excitation Networks" (2017): channel gates from the pooled map.
    MobileNetV3 uses a hard-sigmoid gate; `fc1`/`fc2` are 1x1 convolutions (torchvision's names)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


# ---------------------------------------------------------------------------------------------
# the inverted-residual family
# ---------------------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck: expand 1x1 by t (ReLU6), depthwise 3x3 (ReLU6), linear 1x1 project.

    The residual joins the narrow ends (hence "inverted"), only where stride is 1 and the width is
    unchanged; the projection has no activation because ReLU on a narrow layer destroys
    information (the "linear bottleneck" of the paper's Section 3.2).
    """

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.out_channels = out_ch
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1, activation=nn.ReLU6))
        layers += [ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden, activation=nn.ReLU6),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class InvertedResidualV3(nn.Module):
    """MobileNetV3's bneck: the v2 block with a k x k depthwise conv, optional squeeze-and-excitation
    (squeezed to a quarter of the expanded width) and ReLU or hard-swish. A `dilation` above 1 replaces
    the depthwise conv's stride (torchvision's rule: the residual still follows `stride`)."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, *, use_se: bool, hswish: bool,
                 stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.out_channels = out_ch
        self.use_res_connect = stride == 1 and in_ch == out_ch
        act = nn.Hardswish if hswish else nn.ReLU
        bn = dict(bn_eps=TF_BN_EPS, bn_momentum=TF_BN_MOMENTUM)
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(ConvBNAct(in_ch, expanded, 1, activation=act, **bn))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride=1 if dilation > 1 else stride, groups=expanded,
                                dilation=dilation, activation=act, **bn))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, out_ch, 1, activation=None, **bn))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MBConv(nn.Module):
    """EfficientNet-Lite's mobile inverted bottleneck, without squeeze-and-excitation: 1x1 expand by
    `expand_ratio` (absent when 1), k x k depthwise, linear 1x1 project, all `ConvBNActSame`; a
    residual, with drop connect, where the stride is 1 and the width unchanged."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int, expand_ratio: int,
                 drop_connect_rate: float = 0.0, tf_same: bool = True) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.out_channels = out_ch
        self.use_res_connect = stride == 1 and in_ch == out_ch
        self.drop_connect_rate = drop_connect_rate
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActSame(in_ch, hidden, 1, tf_same=tf_same))
        layers += [ConvBNActSame(hidden, hidden, kernel, stride=stride, groups=hidden, tf_same=tf_same),
                   ConvBNActSame(hidden, out_ch, 1, activation=None, tf_same=tf_same)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_res_connect:
            return out
        return x + drop_connect(out, self.drop_connect_rate, self.training)


# ---------------------------------------------------------------------------------------------
# classifier head
# ---------------------------------------------------------------------------------------------

def linear_classifier(in_features: int, num_classes: int) -> nn.Module:
    """The final layer every family ends with: Linear(in_features, num_classes), or Identity for
    `num_classes=0` (a headless model whose output is the features the Linear would read)."""
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


def dropout_classifier(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout then `linear_classifier`: MobileNetV2's and EfficientNet's `classifier` (keys `.1.*`)."""
    return nn.Sequential(nn.Dropout(dropout), linear_classifier(in_features, num_classes))


# ---------------------------------------------------------------------------------------------
# dense prediction: class scores and learnable upsampling
# ---------------------------------------------------------------------------------------------

def score_conv(in_channels: int, num_classes: int, *, zero: bool = False) -> nn.Conv2d:
    """The 1x1 convolution (with bias) that turns a feature map into class scores: torchvision's last
    layer of FCNHead, DeepLabHead and LRASPPHead (PyTorch's default init), or FCN's `score_*` layers,
    zero-initialised as the paper's (Long et al. 2015, Section 4.3: random init was no better)."""
    conv = nn.Conv2d(in_channels, num_classes, 1)
    if zero:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


def bilinear_kernel(factor: int, channels: int) -> torch.Tensor:
    """The [channels, channels, 2f, 2f] weight of a transposed convolution that upsamples each channel
    by `factor` bilinearly: a tent 1 - |t - c| / f around the kernel's centre c = f - 1/2, one channel to
    itself only (FCN's `surgery.interp`)."""
    size = 2 * factor
    t = torch.arange(size, dtype=torch.float64)
    tent = 1 - (t - (factor - 0.5)).abs() / factor
    weight = torch.zeros(channels, channels, size, size, dtype=torch.float64)
    weight[range(channels), range(channels)] = tent[:, None] * tent[None, :]
    return weight.float()


def bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A learnable x`factor` upsampling of `channels` maps, initialised to bilinear interpolation:
    kernel 2f, stride f, padding f/2, so n positions become exactly f * n, and inside the map it
    equals F.interpolate(scale_factor=f, mode="bilinear", align_corners=False) (the border rows
    differ: interpolate repeats the edge, the transposed convolution sees zeros beyond it)."""
    if factor < 2 or factor % 2:
        raise ValueError(f"bilinear_upsampling takes an even factor >= 2 (kernel 2f, padding f/2), got {factor}")
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(factor, channels))
    return up
