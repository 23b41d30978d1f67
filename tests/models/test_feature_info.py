"""Every registered model describes its stages (`feature_info`) and `forward_stages` returns exactly those maps.

The size rule (FeatureInfo's docstring): a stage of reduction R maps an S x S input to a side of
ceil(S / R) when every layer before it pads to keep its size. The test sizes S are multiples of
every R, so no rounding enters: S / side == R exactly. Networks with unpadded layers (TRIMMED)
lose a border and give less. The exact statement of R for every model that takes more than one
size is the stride itself: an input larger by D = the deepest R gives a side larger by D / R.
"""
from dataclasses import FrozenInstanceError
from functools import lru_cache

import pytest
import torch
from torch import nn

import imgcls
from imgcls.errors import ConfigError
from imgcls.models.base import FeatureInfo

TRIMMED = {"alexnet", "alexnet_paper", "lenet5"}  # unpadded convolutions/pools: smaller than S / R
FIXED_SIZE = {"lenet5", "vit_b_16", "vit_b_32"}  # refuse any other input size: no growth check
CAM = ["resnet18", "alexnet", "googlenet", "mobilenet_v3_small", "densenet121", "vgg11_bn", "lenet5"]


def _make(name: str) -> nn.Module:
    torch.manual_seed(0)
    return imgcls.create_model(name, num_classes=2).eval()  # ViTs at their default 224


_cached = lru_cache(maxsize=None)(_make)  # only the CAM models are kept, for the gradient test below


def _sides(model: nn.Module, size: int) -> list[tuple[int, int, int]]:
    with torch.no_grad():
        maps = model.forward_stages(torch.randn(1, 3, size, size))
    assert len(maps) == len(model.feature_info)
    assert all(m.dim() == 4 and m.shape[0] == 1 for m in maps)
    return [tuple(m.shape[1:]) for m in maps]


@pytest.mark.parametrize("name", imgcls.list_models())
def test_stage_maps_match_feature_info(name):
    model = _cached(name) if name in CAM else _make(name)
    info = model.feature_info
    assert isinstance(info, tuple) and info and all(isinstance(f, FeatureInfo) for f in info)
    assert model.stage_names == tuple(f.module for f in info) and model.last_stage == info[-1].module
    for module in (*model.stage_names, model.cam_layer):
        model.get_submodule(module)  # every name resolves
    reductions = [f.reduction for f in info]
    deepest = reductions[-1]
    assert reductions == sorted(reductions) and all(deepest % r == 0 for r in reductions)  # shallow to deep

    size = model.min_input_size[0]
    sides = _sides(model, size)
    assert [c for c, _, _ in sides] == [f.channels for f in info]
    assert all(h == w for _, h, w in sides)
    if name in TRIMMED:
        assert all(0 < h < -(-size // r) for (_, h, _), r in zip(sides, reductions))
    else:
        assert all(size % r == 0 and size // h == r for (_, h, _), r in zip(sides, reductions))

    if name not in FIXED_SIZE:
        larger = _sides(model, size + deepest)
        assert [h2 - h for (_, h, _), (_, h2, _) in zip(sides, larger)] == [deepest // r for r in reductions]


def test_feature_info_is_a_frozen_record_and_stage_names_follow_it():
    record = FeatureInfo("layer4", 512, 32)
    with pytest.raises(FrozenInstanceError):
        record.channels = 3
    with torch.device("meta"):
        model = imgcls.create_model("resnet18")
    assert model.stage_names == ("relu", "layer1", "layer2", "layer3", "layer4")
    assert model.feature_info[-1] == record and model.last_stage == model.cam_layer == "layer4"
    with pytest.raises(AttributeError, match="derived from feature_info; set feature_info"):
        model.stage_names = ("layer4",)


@pytest.mark.parametrize("alpha,widths", [(1.0, (16, 24, 32, 96, 1280)), (0.5, (8, 16, 16, 48, 1280))])
def test_channels_follow_the_width_multiplier(alpha, widths):
    with torch.device("meta"):  # shapes only: free
        model = imgcls.create_model("mobilenet_v2", width_mult=alpha)
        maps = model.forward_stages(torch.empty(1, 3, 64, 64))
    assert tuple(f.channels for f in model.feature_info) == tuple(m.shape[1] for m in maps) == widths


def test_lenet5_stages_have_the_paper_sizes():
    maps = _cached("lenet5").forward_stages(torch.randn(1, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(6, 14, 14), (16, 5, 5)]  # S2 and S4 of the paper


def test_vit_stage_maps_are_the_patch_tokens_on_their_grid():
    with torch.device("meta"):
        model = imgcls.create_model("vit_b_32", image_size=96)  # a 3x3 grid of patches
    assert [(f.channels, f.reduction) for f in model.feature_info] == [(768, 32)] * 12
    tokens = torch.arange(10.0).view(1, 10, 1).expand(2, 10, 768)  # token t holds the value t
    grid = model.to_feature_map(tokens)
    assert grid.shape == (2, 768, 3, 3)
    assert torch.equal(grid[1, 5], torch.arange(1.0, 10.0).view(3, 3))  # row-major, class token dropped


@pytest.mark.parametrize("name", CAM)
def test_cam_layer_map_steers_the_logits(name):
    model = _cached(name)
    taps = {}
    model.get_submodule(model.cam_layer).register_forward_hook(lambda m, i, o: taps.setdefault("a", o))
    size = model.min_input_size[0]
    score = model(torch.randn(1, 3, size, size))[0].max()
    grad = model.to_feature_map(torch.autograd.grad(score, taps["a"])[0])
    assert grad.shape[1] == model.feature_info[-1].channels and grad.abs().sum() > 0


def test_vit_cam_layer_is_the_last_attention_input_not_the_last_stage():
    torch.manual_seed(0)
    model = imgcls.create_model("vit_b_32", num_classes=2, image_size=64).eval()
    nn.init.normal_(model.heads.head.weight)  # the zero-initialised head would give no gradient at all
    taps = {}
    for layer in (model.last_stage, model.cam_layer):
        model.get_submodule(layer).register_forward_hook(lambda m, i, o, layer=layer: taps.setdefault(layer, o))
    score = model(torch.randn(1, 3, 64, 64))[0, 0]
    last, cam = torch.autograd.grad(score, [taps[model.last_stage], taps[model.cam_layer]])
    assert model.cam_layer == "encoder.layers.encoder_layer_11.ln_1"
    # the head reads the class token only: the final block's patch tokens do not move the logits
    assert torch.count_nonzero(model.to_feature_map(last)) == 0 and torch.count_nonzero(last[:, 0]) > 0
    assert (model.to_feature_map(cam).abs().sum(1) > 0).all()  # every patch position gets a gradient


# ---------------------------------------------------------------------------------------------
# dilated backbones (torchvision's options for segmentation): larger maps, same keys, true strides
# ---------------------------------------------------------------------------------------------

def _dilated(name: str, size: int = 64, **kw) -> tuple[nn.Module, nn.Module, list[torch.Tensor]]:
    with torch.device("meta"):  # shapes only: free
        plain, model = imgcls.create_model(name), imgcls.create_model(name, **kw)
        maps = model.forward_stages(torch.empty(1, 3, size, size))
    shapes = lambda m: [(k, v.shape) for k, v in m.state_dict().items()]  # noqa: E731
    assert shapes(model) == shapes(plain)
    assert [m.shape[1] for m in maps] == [f.channels for f in model.feature_info]
    assert [m.shape[-1] for m in maps] == [size // f.reduction for f in model.feature_info]
    return plain, model, maps


def test_resnet_replace_stride_with_dilation_keeps_layer3_and_layer4_at_stride_8():
    _, model, maps = _dilated("resnet50", replace_stride_with_dilation=[False, True, True])
    assert [(f.module, f.reduction) for f in model.feature_info][-3:] == [("layer2", 8), ("layer3", 8), ("layer4", 8)]
    assert maps[-1].shape[-2:] == (8, 8)  # 64 / 8, where the plain network gives 2 x 2
    # torchvision's rule: a stage's first block keeps the dilation before it, the rest take the new one
    assert [b.conv2.dilation[0] for b in model.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 4]
    assert all(b.conv2.padding == b.conv2.dilation for b in model.layer4)


def test_resnet_dilation_computes_the_strided_maps_densely():
    # a stride-2 conv is the dense conv sampled at even positions, and a conv dilated by d on the dense
    # map is the plain conv on the sampled one (zero padding included): the dilated network's layer3
    # and layer4 maps, sampled every 2 and 4 pixels, are the plain network's (the same weights)
    torch.manual_seed(0)
    plain = imgcls.create_model("resnet50", num_classes=0).eval()
    model = imgcls.create_model("resnet50", num_classes=0, replace_stride_with_dilation=[False, True, True]).eval()
    model.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (*_, p3, p4), (*_, d3, d4) = plain.forward_stages(x), model.forward_stages(x)
    torch.testing.assert_close(d3[..., ::2, ::2], p3, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(d4[..., ::4, ::4], p4, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,dilated_from", [("mobilenet_v3_large", 13), ("mobilenet_v3_small", 9)])
def test_mobilenet_v3_dilated_keeps_the_last_stage_at_stride_16(name, dilated_from):
    plain, model, maps = _dilated(name, dilated=True)
    assert model.feature_info[-1].reduction == 16 and plain.feature_info[-1].reduction == 32
    assert maps[-1].shape[-2:] == (4, 4)
    depthwise = {i: c for i, b in enumerate(model.features) for c in b.modules()
                 if isinstance(c, nn.Conv2d) and c.groups > 1}
    assert [i for i, c in depthwise.items() if c.dilation[0] == 2] == list(range(dilated_from, len(model.features) - 1))
    dilated = [c for c in depthwise.values() if c.dilation[0] == 2]
    assert all(c.stride[0] == 1 and c.padding[0] == c.kernel_size[0] - 1 for c in dilated)  # (k - 1) // 2 * 2


@pytest.mark.parametrize("name,value,says", [
    ("resnet18", [False, True, True], "needs Bottleneck blocks"),
    ("resnet50", [True, True], "takes 3 booleans"),
    ("resnet50", "yes", "takes 3 booleans"),
    ("resnet50", True, "takes 3 booleans"),
])
def test_replace_stride_with_dilation_refuses_what_it_cannot_do(name, value, says):
    with pytest.raises(ConfigError, match=says):
        imgcls.create_model(name, replace_stride_with_dilation=value)
