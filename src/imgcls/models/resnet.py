"""ResNet and its widened/grouped relatives, one class driven by a stage table.

He et al., "Deep Residual Learning for Image Recognition" (2015); Xie et al., "Aggregated Residual
Transformations" (ResNeXt, 2016); Zagoruyko & Komodakis, "Wide Residual Networks" (2016).
Module names (`conv1`, `bn1`, `layer1..4`, `downsample.0/1`, `fc`) are torchvision's on purpose:
they are the keys of the official weight files, which therefore load with `strict=True`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projection) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False, dilation: int = 1) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        if dilation > 1:
            raise ConfigError("replace_stride_with_dilation needs Bottleneck blocks (resnet50 and deeper, "
                              "resnext, wide_resnet); resnet18/34's BasicBlocks keep their strides")
        self.stride, self.out_channels = stride, planes * self.expansion
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (optionally grouped), 1x1 expand by 4: ResNet-50 and deeper, ResNeXt.

    The stride sits on the 3x3 by default ("ResNet v1.5", as torchvision and most later work:
    +0.5% top-1 for +6% FLOPs); `stride_in_1x1=True` gives the paper's v1 placement.
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False, dilation: int = 1) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.stride, self.out_channels = stride, planes * self.expansion
        self.conv1 = conv1x1(in_ch, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(ClassifierMixin, nn.Module):
    """A 7x7 stem, four stages of residual blocks (64-128-256-512 planes), global pool, `fc`.

    `num_classes=0` gives a headless backbone whose output is the pooled feature vector.
    `replace_stride_with_dilation=[False, True, True]` (torchvision's option, what its DeepLabV3 and
    FCN backbones use) keeps layer3 and layer4 at stride 8: each of those stages drops its stride and
    dilates its 3x3 convolutions instead (Yu & Koltun 2016), so the maps are larger and the receptive
    field the same; the keys, and so the weight files, do not change. `feature_info` reports the
    real strides.
    """

    classifier_name = "fc"
    min_input_size = (32, 32)

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int], *,
                 num_classes: int = 1000, in_chans: int = 3, groups: int = 1, width_per_group: int = 64,
                 stride_in_1x1: bool = False, zero_init_residual: bool = False,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> None:
        super().__init__()
        dilate = tuple(replace_stride_with_dilation) if isinstance(replace_stride_with_dilation, (list, tuple)) else ()
        if len(dilate) != 3 or not all(isinstance(d, bool) for d in dilate):
            raise ConfigError(f"replace_stride_with_dilation takes 3 booleans (layer2, layer3, layer4), got "
                              f"{replace_stride_with_dilation!r}; e.g. [false, true, true] for stride 8")
        self.num_classes = num_classes
        self._block_kw = dict(groups=groups, base_width=width_per_group, stride_in_1x1=stride_in_1x1)
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        dilate2, dilate3, dilate4 = dilate
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2, dilate=dilate2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2, dilate=dilate3)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2, dilate=dilate4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512 * block.expansion
        self.fc = linear_classifier(self.num_features, num_classes)

        # the stem's activation (timm's act1, stride 2), then each stage; read off the built blocks
        reduction = self.conv1.stride[0]
        info = [FeatureInfo("relu", self.conv1.out_channels, reduction)]
        reduction *= self.maxpool.stride
        for name in ("layer1", "layer2", "layer3", "layer4"):
            stage = self.get_submodule(name)
            reduction *= stage[0].stride
            info.append(FeatureInfo(name, stage[-1].out_channels, reduction))
        self.feature_info = tuple(info)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity (Goyal et al., 2017)
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last_bn is not None:
                    nn.init.zeros_(last_bn.weight)

    def _make_stage(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int,
                    dilate: bool = False) -> nn.Sequential:
        out_ch = planes * block.expansion
        previous_dilation = self.dilation
        if dilate:  # as torchvision: the first block keeps the dilation before it, the others take the new one
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != out_ch:  # projection shortcut ("option B") only where shape changes
            downsample = nn.Sequential(conv1x1(self.inplanes, out_ch, stride), nn.BatchNorm2d(out_ch))
        layers = [block(self.inplanes, planes, stride=stride, downsample=downsample, dilation=previous_dilation,
                        **self._block_kw)]
        self.inplanes = out_ch
        layers += [block(out_ch, planes, dilation=self.dilation, **self._block_kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


# name: (block, blocks per stage, groups, width per group)
RESNETS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int], int, int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
    "resnext101_64x4d": (Bottleneck, (3, 4, 23, 3), 64, 4),
    "wide_resnet50_2": (Bottleneck, (3, 4, 6, 3), 1, 128),
    "wide_resnet101_2": (Bottleneck, (3, 4, 23, 3), 1, 128),
}


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "resnet": Paper("He, Zhang, Ren, Sun", "Deep Residual Learning for Image Recognition", 2015, "arXiv:1512.03385"),
    "resnext": Paper("Xie, Girshick, Dollár, Tu, He",
                     "Aggregated Residual Transformations for Deep Neural Networks", 2016, "arXiv:1611.05431"),
    "wide_resnet": Paper("Zagoruyko, Komodakis", "Wide Residual Networks", 2016, "arXiv:1605.07146"),
}


def _resnet(name: str, **kwargs) -> ResNet:
    """The RESNETS row `name` as a ResNet; `kwargs` go to ResNet (in_chans, stride_in_1x1, ...)."""
    block, layers, groups, width = RESNETS[name]
    return ResNet(block, layers, groups=groups, width_per_group=width, **kwargs)


@register_model
def resnet18(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-18 (He et al. 2015): the 18-layer column of Table 1, BasicBlocks."""
    return _resnet("resnet18", num_classes=num_classes, **kw)


@register_model
def resnet34(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-34 (He et al. 2015): the 34-layer column of Table 1, BasicBlocks."""
    return _resnet("resnet34", num_classes=num_classes, **kw)


@register_model
def resnet50(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-50 (He et al. 2015): the 50-layer column of Table 1, Bottlenecks (stride on the 3x3: v1.5)."""
    return _resnet("resnet50", num_classes=num_classes, **kw)


@register_model
def resnet101(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-101 (He et al. 2015): the 101-layer column of Table 1, Bottlenecks."""
    return _resnet("resnet101", num_classes=num_classes, **kw)


@register_model
def resnet152(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-152 (He et al. 2015): the 152-layer column of Table 1, Bottlenecks."""
    return _resnet("resnet152", num_classes=num_classes, **kw)


@register_model
def resnext50_32x4d(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2016, Table 1): 32 groups of width 4 in ResNet-50's stages."""
    return _resnet("resnext50_32x4d", num_classes=num_classes, **kw)


@register_model
def resnext101_32x8d(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNeXt-101 32x8d (Xie et al. 2016): 32 groups of width 8 in ResNet-101's stages."""
    return _resnet("resnext101_32x8d", num_classes=num_classes, **kw)


@register_model
def resnext101_64x4d(*, num_classes: int = 1000, **kw) -> ResNet:
    """ResNeXt-101 64x4d (Xie et al. 2016): 64 groups of width 4 in ResNet-101's stages."""
    return _resnet("resnext101_64x4d", num_classes=num_classes, **kw)


@register_model
def wide_resnet50_2(*, num_classes: int = 1000, **kw) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): ResNet-50 with twice the Bottleneck's inner width."""
    return _resnet("wide_resnet50_2", num_classes=num_classes, **kw)


@register_model
def wide_resnet101_2(*, num_classes: int = 1000, **kw) -> ResNet:
    """Wide ResNet-101-2 (Zagoruyko & Komodakis 2016): ResNet-101 with twice the Bottleneck's inner width."""
    return _resnet("wide_resnet101_2", num_classes=num_classes, **kw)
