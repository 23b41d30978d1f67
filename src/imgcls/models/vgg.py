"""VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(2014, arXiv:1409.1556).

Stacks of 3x3 convolutions (stride 1, padding 1) separated by 2x2 max pools; configurations A, B,
D and E of the paper's Table 1 are VGG-11, -13, -16 and -19, and the `_bn` variants put a
BatchNorm after every convolution (not in the paper; torchvision's). Module names are
torchvision's (`features.N` numbered as the layers are listed, `classifier.0/3/6`, an adaptive
7x7 `avgpool`), so the official weight files load with `strict=True`. The adaptive pool makes any
input of at least 32x32 work; at 224x224 it is the identity.
"""
from __future__ import annotations

from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper, init_conv_bn_linear, layer_stride
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model


def make_features(cfg: tuple[int | str, ...], *, batch_norm: bool, in_chans: int = 3) -> nn.Sequential:
    """One `features` Sequential from a column of Table 1: ints are 3x3 conv widths, "M" a 2x2 pool."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
            continue
        layers.append(nn.Conv2d(in_chans, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_chans = v
    return nn.Sequential(*layers)


class VGG(ClassifierMixin, nn.Module):
    """`features` (the conv stacks), a 7x7 adaptive pool, and three fully connected layers."""

    classifier_name = "classifier.6"  # the two 4096-wide layers before it are features to keep
    min_input_size = (32, 32)  # five 2x2 pools: 32 -> 1

    def __init__(self, features: nn.Sequential, *, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = features
        # each max pool closes a stage ("features.4", "features.9", ...: strides 2 to 32) with the
        # width of the convolution before it
        info, channels, reduction = [], 0, 1
        for i, m in enumerate(features):
            reduction *= layer_stride(m)
            if isinstance(m, nn.Conv2d):
                channels = m.out_channels
            elif isinstance(m, nn.MaxPool2d):
                info.append(FeatureInfo(f"features.{i}", channels, reduction))
        self.feature_info = tuple(info)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.num_features = 4096
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            linear_classifier(self.num_features, num_classes),
        )

        init_conv_bn_linear(self)


# The columns of the paper's Table 1 (A-LRN, C with its 1x1 convolutions, are left out).
CFGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}

# name: (configuration, batch norm)
VGGS: dict[str, tuple[str, bool]] = {
    "vgg11": ("A", False), "vgg11_bn": ("A", True),
    "vgg13": ("B", False), "vgg13_bn": ("B", True),
    "vgg16": ("D", False), "vgg16_bn": ("D", True),
    "vgg19": ("E", False), "vgg19_bn": ("E", True),
}


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "vgg": Paper("Simonyan, Zisserman",
                 "Very Deep Convolutional Networks for Large-Scale Image Recognition", 2014, "arXiv:1409.1556"),
}


def _vgg(name: str, *, num_classes: int, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    cfg, batch_norm = VGGS[name]
    return VGG(make_features(CFGS[cfg], batch_norm=batch_norm, in_chans=in_chans), num_classes=num_classes,
               dropout=dropout)


@register_model
def vgg11(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-11 (Simonyan & Zisserman 2014): configuration A of Table 1."""
    return _vgg("vgg11", num_classes=num_classes, **kw)


@register_model
def vgg11_bn(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-11 (Simonyan & Zisserman 2014): configuration A of Table 1, BatchNorm after each conv."""
    return _vgg("vgg11_bn", num_classes=num_classes, **kw)


@register_model
def vgg13(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-13 (Simonyan & Zisserman 2014): configuration B of Table 1."""
    return _vgg("vgg13", num_classes=num_classes, **kw)


@register_model
def vgg13_bn(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-13 (Simonyan & Zisserman 2014): configuration B of Table 1, BatchNorm after each conv."""
    return _vgg("vgg13_bn", num_classes=num_classes, **kw)


@register_model
def vgg16(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-16 (Simonyan & Zisserman 2014): configuration D of Table 1."""
    return _vgg("vgg16", num_classes=num_classes, **kw)


@register_model
def vgg16_bn(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-16 (Simonyan & Zisserman 2014): configuration D of Table 1, BatchNorm after each conv."""
    return _vgg("vgg16_bn", num_classes=num_classes, **kw)


@register_model
def vgg19(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-19 (Simonyan & Zisserman 2014): configuration E of Table 1."""
    return _vgg("vgg19", num_classes=num_classes, **kw)


@register_model
def vgg19_bn(*, num_classes: int = 1000, **kw) -> VGG:
    """VGG-19 (Simonyan & Zisserman 2014): configuration E of Table 1, BatchNorm after each conv."""
    return _vgg("vgg19_bn", num_classes=num_classes, **kw)
