"""AlexNet: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep CNNs" (2012).

`alexnet` is torchvision's single-GPU variant (64-192-384-256-256 kernels, no LRN, adaptive 6x6
pool), whose official weights load into it. `alexnet_paper` is the network of the paper's table:
96-256-384-384-256 kernels (each GPU held half), LRN after conv1 and conv2, padding [1, 2] on conv1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper, layer_stride
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model


class PaddedConv2d(nn.Conv2d):
    """A convolution with asymmetric zero padding (`pad=(before, after)` on both H and W).

    The paper's 224x224 input only gives its 55x55 conv1 output with one pixel before and two after:
    (224 - 11 + 1 + 2) / 4 + 1 = 55. The summary table prints that arithmetic.
    """

    def __init__(self, *args, pad: tuple[int, int], **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.pad
        return super().forward(F.pad(x, (before, after, before, after)))


class AlexNet(ClassifierMixin, nn.Module):
    """Five convolutions in `features`, three fully connected layers in `classifier`."""

    classifier_name = "classifier.6"  # the two 4096-wide layers before it are features to keep
    min_input_size = (63, 63)

    def __init__(self, features: nn.Sequential, pool: nn.Module, *, num_classes: int = 1000,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = features
        # one stage, the whole stack: the last convolution's width at stride 32 (4 * 2 * 2 * 2)
        convs = [m for m in features if isinstance(m, nn.Conv2d)]
        self.feature_info = (FeatureInfo("features", convs[-1].out_channels, math.prod(map(layer_stride, features))),)
        self.avgpool = pool
        self.num_features = 4096
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            linear_classifier(self.num_features, num_classes),
        )


def _torchvision_features() -> nn.Sequential:
    relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), relu(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), relu(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), relu(),
        nn.Conv2d(384, 256, 3, padding=1), relu(),
        nn.Conv2d(256, 256, 3, padding=1), relu(), nn.MaxPool2d(3, 2),
    )


def _paper_features() -> nn.Sequential:
    relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
    # The paper's k=2, n=5, alpha=1e-4, beta=0.75 with its sum un-normalised; torch divides alpha
    # by the window size, so pass alpha * size to get the paper's response normalisation.
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4 * 5, beta=0.75, k=2.0)  # noqa: E731
    return nn.Sequential(
        PaddedConv2d(3, 96, 11, stride=4, pad=(1, 2)), relu(), lrn(), nn.MaxPool2d(3, 2),  # 55 -> 27
        nn.Conv2d(96, 256, 5, padding=2), relu(), lrn(), nn.MaxPool2d(3, 2),  # 27 -> 13
        nn.Conv2d(256, 384, 3, padding=1), relu(),
        nn.Conv2d(384, 384, 3, padding=1), relu(),
        nn.Conv2d(384, 256, 3, padding=1), relu(), nn.MaxPool2d(3, 2),  # 13 -> 6
    )


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "alexnet": Paper("Krizhevsky",
                     "One weird trick for parallelizing convolutional neural networks", 2014, "arXiv:1404.5997"),
    "alexnet_paper": Paper("Krizhevsky, Sutskever, Hinton",
                           "ImageNet Classification with Deep Convolutional Neural Networks", 2012, "NeurIPS 2012"),
}


@register_model
def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's AlexNet ("One weird trick", Krizhevsky 2014): loads the official weights."""
    return AlexNet(_torchvision_features(), nn.AdaptiveAvgPool2d((6, 6)), num_classes=num_classes, dropout=dropout)


@register_model
def alexnet_paper(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """The 2012 paper's AlexNet on one device: LRN, 96-256-384-384-256 kernels, 224x224 input."""
    model = AlexNet(_paper_features(), nn.Identity(), num_classes=num_classes, dropout=dropout)
    model.min_input_size = (224, 224)
    model.fixed_input_size = True  # no adaptive pool: the classifier wants exactly 6x6x256
    return model
