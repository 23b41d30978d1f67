"""What every imgcls model answers, so generic code (freezing, heads, CAM, export) never guesses.

A model sets two class attributes, fills `feature_info` when it is built and, unless it is the
common features -> avgpool -> classifier shape (the defaults below), implements
`forward_features` / `forward_head`:
- `classifier_name`: the attribute holding the final classifier (`fc`, `classifier`, `head`);
- `min_input_size`: the smallest (H, W) the network accepts; `fixed_input_size`: True when it is
  also the only size (a classifier that reads a map of fixed size, position embeddings);
- `feature_info`: one `FeatureInfo(module, channels, reduction)` per feature stage, shallow to
  deep, computed from the layers as they are built (timm's `feature_info`). `stage_names`,
  `last_stage` and `forward_stages` are derived from it.
The weight loaders (imgcls.weights) call two hooks, which a family overrides where its files need it:
- `remap_state_dict(state_dict)`: a file's state dict in this model's keys (DenseNet's legacy names,
  ViT's position grid resized, GoogLeNet's auxiliary heads dropped); the identity by default;
- `extra_head_names`: class-sized layers besides the classifier (GoogLeNet's `aux1.fc2`, `aux2.fc2`),
  which a file for another number of classes may not fill either; none by default.
Those are `ModelContract`'s, which classifiers (`ClassifierMixin`: logits) and segmentation models
(`SegmenterMixin`: a dict of per-pixel score maps) share; `task` says which a model is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import bilinear_upsampling, linear_classifier, score_conv


@dataclass(frozen=True)
class FeatureInfo:
    """One feature stage: `module` (a name for `get_submodule`) outputs a map of `channels` channels
    at `reduction`, its total stride with respect to the input (the product of the strides before it;
    a stage dilated instead of strided, as ResNet's `replace_stride_with_dilation`, keeps its input's).

    An S x S input gives a map of side ceil(S / reduction) where every layer pads to keep its size
    ('same'); unpadded layers (AlexNet, LeNet-5) trim a border, so theirs is smaller. Exact in both
    cases: an input larger by k * reduction pixels gives a map larger by k.
    """

    module: str
    channels: int
    reduction: int


class Paper(NamedTuple):
    """A family file's citation (its `PAPERS`, by builder-name prefix): what docs/models.md prints."""

    authors: str
    title: str
    year: int
    ref: str  # an arXiv id ("arXiv:1512.03385") or a venue


class ModelContract:
    """What classifiers and segmentation models share: the class-sized layers by name, the stages,
    the weight loaders' hooks."""

    task: str = "classification"  # the registry's task of the family (models/registry.py)
    classifier_name: str = "fc"
    min_input_size: tuple[int, int] = (32, 32)
    fixed_input_size: bool = False
    feature_info: tuple[FeatureInfo, ...] = ()  # set per instance by each family's __init__
    # the memory layout training uses unless told (--channels-last): NHWC is faster for most CNNs on
    # CPU; a family whose depthwise convolutions are slower in it says False (benchmarks/train_step.py)
    channels_last: bool = True
    extra_head_names: tuple[str, ...] = ()  # see the module docstring

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The modules of `feature_info`, shallow to deep (what `last:<stage>` transfer names)."""
        return tuple(f.module for f in self.feature_info)

    @stage_names.setter
    def stage_names(self, value: tuple[str, ...]) -> None:
        raise AttributeError(f"{type(self).__name__}.stage_names is derived from feature_info; set "
                             "feature_info = (FeatureInfo(module, channels, reduction), ...) instead")

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Called by the weight loaders before loading: the file's keys as this model's (unchanged here)."""
        return state_dict

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def _set_module(self, name: str, module: nn.Module) -> None:
        parent, _, leaf = name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, leaf, module)


class ClassifierMixin(ModelContract):
    num_features: int  # width of the features the final Linear reads (the headless model's output)

    @property
    def last_stage(self) -> str:
        """The module of the deepest feature map (the one the pooled features are read from)."""
        if not self.feature_info:
            raise NotImplementedError(f"{type(self).__name__} describes no feature stages (feature_info is empty)")
        return self.feature_info[-1].module

    @property
    def cam_layer(self) -> str:
        """The layer Grad-CAM targets by default: `last_stage`, unless the logits do not depend on
        that map's positions (ViT reads only the class token; it names the last block's `ln_1`)."""
        return self.last_stage

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one; 0 makes the model headless."""
        new = linear_classifier(self.num_features, num_classes)
        self._set_module(self.classifier_name, new)
        self.num_classes = num_classes

    # The common shape features -> avgpool -> flatten -> classifier; families that differ override.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def to_feature_map(self, output: torch.Tensor) -> torch.Tensor:
        """A stage module's output, or the gradient of it, as an [N, C, H, W] map: itself for a CNN;
        models whose stages are not maps (ViT's token sequences) override this."""
        return output

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One [N, channels, H', W'] map per `feature_info` record, in its order (for Grad-CAM,
        FCN/FPN-style heads, feature extraction); H', W' as `FeatureInfo` says."""
        outs: dict[str, torch.Tensor] = {}

        def keep(name: str):  # the first output wins should a module run twice
            return lambda module, inputs, output: outs.setdefault(name, output)

        hooks = [self.get_submodule(f.module).register_forward_hook(keep(f.module)) for f in self.feature_info]
        try:
            self.forward_features(x)
        finally:
            for h in hooks:
                h.remove()
        return [self.to_feature_map(outs[f.module]) for f in self.feature_info]


class SegmenterMixin(ModelContract):
    """A per-pixel classifier (registered with task="segmentation"). `forward(x)` returns a dict, as
    torchvision's segmentation models do: "out", the [N, num_classes, H, W] class scores at the
    input's own H x W, and "aux", the same from an auxiliary head, where the model was built with one
    (`aux_loss=True`: in eval mode too, as torchvision returns it). Training adds the "aux" loss with
    weight `aux_weight` (0.5, torchvision's reference recipe); predictions read "out" alone.

    - `backbone`: the classification network the maps come from (headless, its classifier removed),
      or for torchvision's MobileNetV3 models its trimmed `features`, keys `backbone.*` either way;
      ImageNet weights go into it with `imgcls.weights.load_weights(model.backbone, name)`;
    - `feature_info`: the backbone maps the heads read, shallow to deep, named from the model's root;
    - `classifier_name`: the layer that produces "out"'s classes; `extra_head_names`: every other
      class-sized layer (the aux head's, LR-ASPP's low-level scores, FCN's skip scores and its
      class-to-class upsamplings). A weight file for another number of classes skips all of them
      (weights/loader.py), and `reset_classifier(n)` rebuilds all of them.
    """

    task = "segmentation"
    aux_weight: float = 0.5
    zero_init_scores: bool = False  # FCN's score layers start at zero; torchvision's heads at PyTorch's init
    num_classes: int

    def reset_classifier(self, num_classes: int) -> None:
        """Rebuild every class-sized layer for `num_classes` classes, freshly initialised: score
        convolutions as at build time, transposed convolutions to bilinear upsampling."""
        check_num_classes(num_classes, type(self).__name__)
        for name in (self.classifier_name, *self.extra_head_names):
            old = self.get_submodule(name)
            if isinstance(old, nn.ConvTranspose2d):
                new = bilinear_upsampling(num_classes, old.stride[0])
            else:
                new = score_conv(old.in_channels, num_classes, zero=self.zero_init_scores)
            self._set_module(name, new)
        self.num_classes = num_classes


def check_num_classes(num_classes: int, model: str) -> None:
    """A segmentation model scores at least one class per pixel (no headless form)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"{model} needs num_classes >= 1 (one score map per class, the background "
                          f"included), got {num_classes!r}")


def layer_stride(module: nn.Module) -> int:
    """The stride of a convolution or pooling layer; 1 for any other layer."""
    stride = module.stride if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) else 1
    return stride[0] if isinstance(stride, tuple) else stride


def last_per_resolution(features: nn.Sequential) -> tuple[FeatureInfo, ...]:
    """The stages of a flat `features` Sequential of blocks (the MobileNets, EfficientNet): the last
    block at each resolution, i.e. before every strided block and at the end. A block's stride is its
    largest convolution stride; its width its `out_channels` (for a Sequential stage: its last block's)."""
    strides = [max(c.stride[0] for c in m.modules() if isinstance(c, nn.Conv2d)) for m in features]
    widths = [m.out_channels if hasattr(m, "out_channels") else m[-1].out_channels for m in features]
    info, reduction = [], 1
    for i, stride in enumerate(strides):
        if i > 0 and stride > 1:
            info.append(FeatureInfo(f"features.{i - 1}", widths[i - 1], reduction))
        reduction *= stride
    last = len(features) - 1
    return (*info, FeatureInfo(f"features.{last}", widths[last], reduction))


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
