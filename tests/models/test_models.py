import pytest
import torch
from torch import nn

import imgcls
from imgcls.models.registry import create_model, get_builder
from imgcls.models.resnet import BasicBlock, Bottleneck, ResNet


# the wide/deep ones cost seconds each on 2 cores; their structure is proven by the parity test
FAST = ["resnet18", "resnet50", "resnext50_32x4d", "alexnet", "alexnet_paper"]


@pytest.mark.parametrize("name", FAST)
def test_forward_backward_and_heads(name):
    torch.manual_seed(0)
    model = imgcls.create_model(name, num_classes=7)
    x = torch.randn(2, 3, *model.min_input_size)
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 7)
    assert all(p.grad is not None for p in model.parameters())

    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert model.get_classifier().out_features == 3
    model.reset_classifier(0)
    feats = model(x)
    assert feats.shape == (2, model.num_features)


@pytest.mark.parametrize("name", FAST)
def test_headless_backbone_returns_pooled_features(name):
    model = imgcls.create_model(name, num_classes=0).eval()
    x = torch.randn(1, 3, *model.min_input_size)
    with torch.no_grad():
        feats = model(x)
        full = imgcls.create_model(name, num_classes=4).eval()
        full.load_state_dict(model.state_dict(), strict=False)
        assert feats.shape == (1, model.num_features)
        assert torch.allclose(full.forward_head(full.forward_features(x)), full(x))


def test_resnet_stage_maps_have_paper_shapes():
    model = imgcls.create_model("resnet50").eval()
    with torch.no_grad():
        maps = model.forward_stages(torch.randn(1, 3, 224, 224))
    # the stem's activation (conv1 at stride 2), then conv2_x..conv5_x of the paper's Table 1
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 112, 112), (256, 56, 56), (512, 28, 28), (1024, 14, 14),
                                                   (2048, 7, 7)]
    assert [(f.channels, f.reduction) for f in model.feature_info] == [(64, 2), (256, 4), (512, 8), (1024, 16),
                                                                        (2048, 32)]


def test_projection_shortcut_only_where_shape_changes():
    model = imgcls.create_model("resnet34")
    with_proj = sorted(n for n, m in model.named_modules() if n.endswith("downsample"))
    assert with_proj == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]
    model = imgcls.create_model("resnet50")  # layer1.0 changes 64 -> 256 channels: projection too
    assert sum(n.endswith("downsample") for n, _ in model.named_modules()) == 4


@pytest.mark.parametrize("v1,strided", [(False, "conv2"), (True, "conv1")])
def test_bottleneck_stride_placement(v1, strided):
    model = imgcls.create_model("resnet50", stride_in_1x1=v1)
    block = model.layer2[0]
    strides = {n: block.get_submodule(n).stride[0] for n in ("conv1", "conv2", "conv3")}
    assert strides == {"conv1": 1, "conv2": 1, "conv3": 1} | {strided: 2}


def test_zero_init_residual_makes_blocks_identity_plus_shortcut():
    model = imgcls.create_model("resnet18", zero_init_residual=True)
    last_bns = [m.bn2 for m in model.modules() if isinstance(m, BasicBlock)]
    assert last_bns and all(torch.count_nonzero(bn.weight) == 0 for bn in last_bns)
    model = imgcls.create_model("resnet50", zero_init_residual=True)
    assert all(torch.count_nonzero(m.bn3.weight) == 0 for m in model.modules() if isinstance(m, Bottleneck))


def test_resnext_uses_grouped_3x3():
    model = imgcls.create_model("resnext50_32x4d")
    assert model.layer1[0].conv2.groups == 32 and model.layer1[0].conv2.in_channels == 128


def test_basic_block_refuses_groups():
    with pytest.raises(ValueError, match="BasicBlock"):
        ResNet(BasicBlock, (1, 1, 1, 1), groups=2)


def test_no_bias_in_convs_and_bn_after_each():
    model = imgcls.create_model("resnet18")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(c.bias is None for c in convs) and len(convs) == len(bns) == 20


def test_alexnet_paper_lrn_and_dropout():
    model = imgcls.create_model("alexnet_paper")
    lrns = [m for m in model.features if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2 and all((m.size, m.beta, m.k) == (5, 0.75, 2.0) for m in lrns)
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    x = torch.rand(1, 5, 4, 4)
    # the paper's formula: b = a / (k + alpha * sum of a^2 over 5 neighbouring channels)^beta
    sq = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, i:i + 5] for i in range(5))
    assert torch.allclose(lrns[0](x), x / (2.0 + 1e-4 * window).pow(0.75))


def _one_per_family() -> list[str]:
    first = {}
    for name in imgcls.list_models():
        first.setdefault(get_builder(name).__module__, name)
    return sorted({*first.values(), "alexnet_paper"})  # alexnet_paper: alexnet's family, but one input size


@pytest.mark.parametrize("name", _one_per_family())
def test_a_fixed_input_size_is_declared(name):
    # shapes only (meta device): a model that says its smallest input is its only one refuses a larger one
    with torch.device("meta"):
        model = create_model(name, num_classes=3).eval()  # eval: one output (GoogLeNet adds aux heads in training)
    h, w = model.min_input_size
    if model.fixed_input_size:
        with pytest.raises((ValueError, RuntimeError)):
            model(torch.empty(2, 3, 2 * h, 2 * w, device="meta"))
    else:
        assert model(torch.empty(2, 3, 2 * h, 2 * w, device="meta")).shape == (2, 3)
