"""What every imgcls model answers, so generic code (freezing, heads, CAM, export) never guesses.

A model sets three class attributes and, unless it is the common features -> avgpool -> classifier
shape (the defaults below), implements `forward_features` / `forward_head`:
- `classifier_name`: the attribute holding the final classifier (`fc`, `classifier`, `head`);
- `stage_names`: the modules that produce its feature stages, shallow to deep;
- `min_input_size`: the smallest (H, W) the network accepts.
"""
from __future__ import annotations

import torch
from torch import nn


class ClassifierMixin:
    classifier_name: str = "fc"
    stage_names: tuple[str, ...] = ()
    min_input_size: tuple[int, int] = (32, 32)
    num_features: int  # width of the features the final Linear reads (the headless model's output)

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one; 0 makes the model headless."""
        new = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._set_module(self.classifier_name, new)
        self.num_classes = num_classes

    def _set_module(self, name: str, module: nn.Module) -> None:
        parent, _, leaf = name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, leaf, module)

    # The common shape features -> avgpool -> flatten -> classifier; families that differ override.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage in `stage_names` (for Grad-CAM, FPN-style heads)."""
        outs: list[torch.Tensor] = []
        hooks = [self.get_submodule(n).register_forward_hook(lambda m, i, o: outs.append(o)) for n in self.stage_names]
        try:
            self.forward_features(x)
        finally:
            for h in hooks:
                h.remove()
        return outs


def init_conv_bn_linear(model: nn.Module) -> None:
    """torchvision's init for VGG and the MobileNets: convs Kaiming-normal (fan_out, ReLU gain),
    BatchNorm weight 1 / bias 0, Linear N(0, 0.01), every bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
