"""DenseNet: Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks"
(2016, arXiv:1608.06993).

Each layer of a dense block reads the concatenation of every earlier feature map of the block
and adds `growth_rate` new channels (BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv to k: "DenseNet-B");
transitions halve the channels and the resolution ("-C", compression 0.5). Module names are
torchvision's (`features.denseblockN.denselayerM.norm1/conv1/norm2/conv2`, `transitionN`,
`norm5`, `classifier`), so the official weights load with `strict=True`. The files torchvision
still serves were saved by an older version whose keys read `norm.1`, `conv.2`, ...:
`remap_legacy_densenet_keys` renames them, and `create_model(..., weights=)` and
`imgcls.weights.load_pretrained` apply it through `DenseNet.remap_state_dict`.

`memory_efficient=True` recomputes each layer's concatenation + BN + 1x1 conv in the backward
pass (torch.utils.checkpoint) instead of storing it: memory grows linearly rather than
quadratically with depth, for about 15-20% more training time. Results are identical.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model

# "features.denseblock1.denselayer1.norm.1.weight" -> "features.denseblock1.denselayer1.norm1.weight"
_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def remap_legacy_densenet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with pre-2018 torchvision DenseNet keys renamed (`norm.1` -> `norm1`, `conv.2` ->
    `conv2`, ...), order kept; current keys pass unchanged.

    Those files also predate BatchNorm's `num_batches_tracked` counter: where a BatchNorm has
    `running_mean` but no counter, a zero counter is added, as BatchNorm itself does when it loads
    such an old state dict (so a strict, key-by-key comparison sees a complete state dict).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = _LEGACY_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    for key in [k for k in out if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (to bn_size * growth_rate) then BN-ReLU-Conv3x3 (to growth_rate)."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, *, drop_rate: float = 0.0,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def bottleneck(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(t.requires_grad for t in inputs):
            out = cp.checkpoint(self.bottleneck, *inputs, use_reentrant=False)
        else:
            out = self.bottleneck(*inputs)
        out = self.conv2(self.relu2(self.norm2(out)))
        return F.dropout(out, p=self.drop_rate, training=self.training) if self.drop_rate > 0 else out


class DenseBlock(nn.ModuleDict):
    """`num_layers` dense layers; layer i reads in_ch + i * growth_rate channels."""

    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, bn_size: int, **layer_kw) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, **layer_kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 to `out_ch` (half the input: compression 0.5), then a 2x2 average pool."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(ClassifierMixin, nn.Module):
    """A 7x7 stem, four dense blocks with transitions between them, a final BN, pool, `classifier`."""

    classifier_name = "classifier"
    min_input_size = (32, 32)  # stride 32: 32 -> 1

    def __init__(self, growth_rate: int, block_config: tuple[int, ...], num_init_features: int, *,
                 num_classes: int = 1000, in_chans: int = 3, bn_size: int = 4, drop_rate: float = 0.0,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        # stages: the stem's activation (stride 2, timm's norm0), then each dense block's output
        reduction = self.features.conv0.stride[0]
        info = [FeatureInfo("features.relu0", num_init_features, reduction)]
        ch, reduction = num_init_features, reduction * self.features.pool0.stride
        for i, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{i}", DenseBlock(
                num_layers, ch, growth_rate, bn_size, drop_rate=drop_rate, memory_efficient=memory_efficient))
            ch += num_layers * growth_rate
            info.append(FeatureInfo(f"features.denseblock{i}", ch, reduction))
            if i != len(block_config):
                transition = Transition(ch, ch // 2)
                self.features.add_module(f"transition{i}", transition)
                ch //= 2
                reduction *= transition.pool.stride
        self.feature_info = tuple(info)
        self.features.add_module("norm5", nn.BatchNorm2d(ch))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = ch
        self.classifier = linear_classifier(ch, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Called by the weight loaders before loading: legacy torchvision key names are renamed."""
        return remap_legacy_densenet_keys(state_dict)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # norm5 has no ReLU after it inside `features`: torchvision applies it here, before the pool
        # (not in place: `x` may be a cached output of forward_features)
        return self.classifier(torch.flatten(self.avgpool(F.relu(x)), 1))


# name: (growth rate k, layers per dense block, stem width); the paper's Table 1 (161: k=48)
DENSENETS: dict[str, tuple[int, tuple[int, int, int, int], int]] = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "densenet": Paper("Huang, Liu, van der Maaten, Weinberger",
                      "Densely Connected Convolutional Networks", 2016, "arXiv:1608.06993"),
}


def _densenet(name: str, *, num_classes: int, in_chans: int = 3, drop_rate: float = 0.0,
              memory_efficient: bool = False) -> DenseNet:
    growth, blocks, stem = DENSENETS[name]
    return DenseNet(growth, blocks, stem, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                    memory_efficient=memory_efficient)


@register_model
def densenet121(*, num_classes: int = 1000, **kw) -> DenseNet:
    """DenseNet-121 (Huang et al. 2016): the DenseNet-121 column of Table 1."""
    return _densenet("densenet121", num_classes=num_classes, **kw)


@register_model
def densenet161(*, num_classes: int = 1000, **kw) -> DenseNet:
    """DenseNet-161 (Huang et al. 2016): the paper's wide ImageNet model (larger growth rate and stem)."""
    return _densenet("densenet161", num_classes=num_classes, **kw)


@register_model
def densenet169(*, num_classes: int = 1000, **kw) -> DenseNet:
    """DenseNet-169 (Huang et al. 2016): the DenseNet-169 column of Table 1."""
    return _densenet("densenet169", num_classes=num_classes, **kw)


@register_model
def densenet201(*, num_classes: int = 1000, **kw) -> DenseNet:
    """DenseNet-201 (Huang et al. 2016): the DenseNet-201 column of Table 1."""
    return _densenet("densenet201", num_classes=num_classes, **kw)
