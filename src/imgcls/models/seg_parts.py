"""What segmentation models are made of, apart from the models: a classifier's stages as a backbone
(classifier_backbone, stage_at, backbone_maps: the maps of named stages in one forward), resizing a
score map to the input (resize_to, fit_to) and torchvision's heads with its module names (FCNHead, ASPP,
DeepLabHead, LRASPPHead). The models that combine them are in segmentation.py.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.base import ClassifierMixin, FeatureInfo, layer_stride
from imgcls.models.layers import score_conv
from imgcls.models.registry import create_model, task_of

DEEPLAB_RATES = (12, 24, 36)  # DeepLabV3's atrous rates at output stride 8, which torchvision keeps at 16 too

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


SIZE_MULTIPLE = 32  # the deepest stride of every backbone in the zoo (8, 16 and 32 divide it)


def padded_forward(net: Callable[[torch.Tensor], Any], x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> Any:
    """`net(x)` with `x` padded at its bottom and right, by zeros (the mean colour once normalised), to a
    height and width that are multiples of `multiple`, and every output map cropped back to x's size.

    On another size the deeper maps end in a partial row or column (a 360-row photo's stride-32 map has
    12 rows for 11.25 rows of photo), which training crops (multiples of 32) never have, and a bilinear
    resize between a 12-row and a 45-row map stretches 12 cells where 11.25 belong. Padded, every map has
    whole cells and every resize between maps is by the stride's own factor, as in training. Measured on CamVid val
    (480x360, FCN-8s on EfficientNet-Lite0, the same weights): 62.75% mean IoU as is, 67.87% padded
    (docs/segmentation.md). torchvision's models keep torchvision's forward (and parity); padding is the
    caller's choice, made by the segmentation task, eval, predict, serve and the exported graph."""
    h, w = x.shape[-2:]  # no branch on the sizes: an exported graph pads whatever size it is given
    out = net(F.pad(x, (0, -w % multiple, 0, -h % multiple)))
    if isinstance(out, dict):
        return {k: v[..., :h, :w] if isinstance(v, torch.Tensor) else v for k, v in out.items()}
    return out[..., :h, :w]


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


def flat_stages(features: nn.Sequential) -> list[FeatureInfo]:
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
