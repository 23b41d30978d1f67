"""LeNet-5: LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), 1998.

This is the network of the PyTorch CIFAR-10 tutorial and of most courses rather than the paper's
exact one: max pooling instead of the trainable sub-sampling layers, ReLU instead of the scaled
tanh, every C3 map connected to every S2 map, and a Linear output instead of the RBF units. The
layer sizes are the paper's: a 32x32 input, C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5,
then 120, 84 and the classes. Module names are the tutorial's (`conv1`, `conv2`, `fc1..3`), so
its saved state dicts load. The classifier reads a fixed 16x5x5 map: the input must be exactly
32x32 (pad 28x28 MNIST digits by 2 on each side, as the paper did).
"""
from __future__ import annotations

import torch
from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model


class LeNet5(ClassifierMixin, nn.Module):
    """conv5-6, pool, conv5-16, pool, fc120, fc84, fc classes; `in_chans=1` for grayscale."""

    classifier_name = "fc3"
    min_input_size = (32, 32)
    fixed_input_size = True  # fc1 reads 16x5x5

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 6, 5)  # 32 -> 28
        self.pool1 = nn.MaxPool2d(2)  # 28 -> 14
        self.conv2 = nn.Conv2d(6, 16, 5)  # 14 -> 10
        self.pool2 = nn.MaxPool2d(2)  # 10 -> 5
        self.relu = nn.ReLU(inplace=True)
        # S2 and S4 of the paper: 6@14x14 (stride 2) and 16@5x5 (stride 4; the 5x5 convs trim borders)
        self.feature_info = (FeatureInfo("pool1", self.conv1.out_channels, self.pool1.stride),
                             FeatureInfo("pool2", self.conv2.out_channels, self.pool1.stride * self.pool2.stride))
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.num_features = 84
        self.fc3 = linear_classifier(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.min_input_size:
            raise ValueError(f"LeNet5 takes 32x32 images (fc1 reads a 16x5x5 map), got {x.shape[-2]}x{x.shape[-1]}; "
                             "resize, or pad 28x28 digits by 2 on each side")
        x = self.pool1(self.relu(self.conv1(x)))
        return self.pool2(self.relu(self.conv2(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(self.relu(self.fc2(x)))


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "lenet": Paper("LeCun, Bottou, Bengio, Haffner",
                   "Gradient-Based Learning Applied to Document Recognition", 1998, "Proc. IEEE 86(11)"),
}


@register_model
def lenet5(*, num_classes: int = 10, in_chans: int = 3) -> LeNet5:
    """LeNet-5 as taught (LeCun et al. 1998; the PyTorch CIFAR-10 tutorial's `Net`): 62,006 parameters
    for RGB and 10 classes (61,706 with `in_chans=1`); 32x32 input only."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans)
