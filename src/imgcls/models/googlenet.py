"""GoogLeNet (Inception v1): Szegedy et al., "Going Deeper with Convolutions" (2014, arXiv:1409.4842).

torchvision's version, whose official weights load with `strict=True`: every convolution is a
`BasicConv2d` (conv without bias, BatchNorm with eps=0.001, ReLU) although the paper predates
BatchNorm, and the "5x5" branch of each Inception module is a 3x3 convolution (a known slip kept
because the weights were trained that way). Module names follow the paper's Table 1 (`conv1..3`,
`inception3a..5b`, `aux1`, `aux2`, `fc`).

Outputs. In training mode, with the auxiliary classifiers present (`aux_logits=True`, the
default), `forward` returns `GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`, a namedtuple
with torchvision's field names and order: the main logits first, then `aux2` (the head on
inception4d), then `aux1` (the head on inception4a). (torchvision's own eager forward swaps the
two tensors under these names, so positionally its [1] is the inception4a head; with equal loss
weights that makes no difference.) The paper adds each auxiliary loss with weight 0.3
(`imgcls.engine` reads any tuple output as `(logits, *aux)` and does exactly that). In eval
mode, or without auxiliary heads, it returns the logits tensor alone: the auxiliary heads are
not run, so their parameters get no gradient from an eval-mode forward.

Input. torchvision's ImageNet weights were trained on inputs scaled to [-1, 1]; it therefore sets
`transform_input=True` whenever it loads them, which maps the usual ImageNet-normalised input
((x - mean) / std) to that range inside the model. We build with `transform_input=False` (as
torchvision does without weights, and as the parity fixture was made). The weights name
`googlenet.tv_in1k` sets `transform_input=True` wherever it is used (`imgcls.create_model(...,
weights=...)`, `imgcls train --weights`, predict/eval by name); pass it yourself when you load the
official IMAGENET1K_V1 file by its path.

Transfer. `reset_classifier(n)` renews `fc` and both auxiliary `fc2` layers. With
`aux_logits=False` there are no auxiliary heads, and the weight loaders skip the file's
`aux1.*`/`aux2.*` tensors (`remap_state_dict`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model


_Aux = torch.Tensor | None  # an auxiliary head's logits, None when it did not run


class GoogLeNetOutputs(NamedTuple):
    """What a training-mode GoogLeNet with auxiliary heads returns (torchvision's field names)."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor  # the head on inception4d
    aux_logits1: torch.Tensor  # the head on inception4a


class BasicConv2d(nn.Module):
    """Convolution (no bias), BatchNorm (eps=0.001, TensorFlow's default), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.out_channels = out_ch
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1 | 1x1-3x3 | 1x1-"5x5" | pool-1x1."""

    def __init__(self, in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = BasicConv2d(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        # the paper's 5x5; a 3x3 in the torchvision weights (see the module docstring)
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_ch, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """An auxiliary classifier: 4x4 average pool, 1x1 conv to 128, fc 1024, dropout 0.7, fc classes."""

    def __init__(self, in_ch: int, num_classes: int, *, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_ch, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the paper's 5x5/3 average pool gives 4x4 on its 14x14 maps; adaptive keeps that at any size
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1)), inplace=True))
        return self.fc2(x)


class GoogLeNet(ClassifierMixin, nn.Module):
    """The 22-layer network of the paper's Table 1, optional auxiliary heads on inception4a/4d.

    `num_classes=0` gives a headless backbone: no auxiliary heads (there are no classes for them
    to predict), and `forward` returns the pooled 1024-wide features in every mode.
    """

    classifier_name = "fc"
    extra_head_names = ("aux1.fc2", "aux2.fc2")  # class-sized too: a file for other classes skips them
    min_input_size = (32, 32)  # stride 32 with ceil-mode pools: 32 -> 1

    def __init__(self, *, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 dropout: float = 0.2, dropout_aux: float = 0.7) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj): the columns of Table 1
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        with_aux = aux_logits and num_classes > 0
        self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux) if with_aux else None
        self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux) if with_aux else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.num_features = 1024
        self.fc = linear_classifier(self.num_features, num_classes)

        # stages: conv1 (stride 2, as ResNet's stem), then the last module at each resolution the
        # max pools make (strides 4, 8, 16, 32)
        reduction = self.conv1.conv.stride[0]
        info = [FeatureInfo("conv1", self.conv1.out_channels, reduction)]
        for pool, stage in (("maxpool1", "conv3"), ("maxpool2", "inception3b"), ("maxpool3", "inception4e"),
                            ("maxpool4", "inception5b")):
            reduction *= self.get_submodule(pool).stride
            info.append(FeatureInfo(stage, self.get_submodule(stage).out_channels, reduction))
        self.feature_info = tuple(info)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def aux_logits(self) -> bool:
        return self.aux1 is not None

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh `fc` and fresh auxiliary `fc2` layers for `num_classes`; 0 also drops the aux heads."""
        super().reset_classifier(num_classes)
        if num_classes == 0:
            self.aux1 = self.aux2 = None
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(aux.fc2.in_features, num_classes)

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the file's auxiliary heads when this model has none (torchvision's files carry them)."""
        if self.aux_logits:
            return state_dict
        return {k: v for k, v in state_dict.items() if not k.startswith(("aux1.", "aux2."))}

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        # (x - mean) / std  ->  (raw - 0.5) / 0.5, per channel, for the [-1, 1]-trained weights
        mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def _body(self, x: torch.Tensor, *, with_aux: bool) -> tuple[torch.Tensor, _Aux, _Aux]:
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x)), aux2, aux1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: torch.Tensor) -> GoogLeNetOutputs | torch.Tensor:
        with_aux = self.training and self.aux_logits
        x, aux2, aux1 = self._body(x, with_aux=with_aux)
        logits = self.forward_head(x)
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "googlenet": Paper("Szegedy et al.", "Going Deeper with Convolutions", 2014, "arXiv:1409.4842"),
}


@register_model
def googlenet(*, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
              dropout: float = 0.2, dropout_aux: float = 0.7) -> GoogLeNet:
    """GoogLeNet (Szegedy et al. 2014) as torchvision builds it; see the module docstring for the
    training-mode outputs and for `transform_input=True` with the official weights."""
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
                     dropout=dropout, dropout_aux=dropout_aux)
