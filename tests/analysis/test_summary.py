import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from torch import nn

import imgcls
from imgcls.analysis import conv_output_size, summarize
from imgcls.cli import main
from imgcls.errors import ConfigError

PAPER_V1 = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 3.86, "resnet101": 7.57, "resnet152": 11.28}
TORCHVISION_V15 = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnet101": 7.80, "resnet152": 11.51}


@pytest.mark.parametrize("name", PAPER_V1)
def test_resnet_gflops_match_published(name):
    assert round(summarize(imgcls.create_model(name, stride_in_1x1=True)).gmacs, 2) == PAPER_V1[name]
    assert round(summarize(imgcls.create_model(name)).gmacs, 2) == TORCHVISION_V15[name]


@pytest.mark.parametrize("name,params", [("resnet34", 21_797_672), ("alexnet", 61_100_840), ("resnet50", 25_557_032)])
def test_param_counts(name, params):
    s = summarize(imgcls.create_model(name))
    assert s.total_params == s.trainable_params == params
    assert sum(r.params for r in s.rows) == params  # every parameter sits in exactly one row


def test_alexnet_paper_table_matches_the_seed():
    s = summarize(imgcls.create_model("alexnet_paper"))
    shapes = [(r.kind, r.out_shape) for r in s.rows if r.kind != "LocalResponseNorm"]
    assert shapes == [
        ("PaddedConv2d", (96, 55, 55)), ("MaxPool2d", (96, 27, 27)),
        ("Conv2d", (256, 27, 27)), ("MaxPool2d", (256, 13, 13)),
        ("Conv2d", (384, 13, 13)), ("Conv2d", (384, 13, 13)), ("Conv2d", (256, 13, 13)),
        ("MaxPool2d", (256, 6, 6)),
        ("Linear", (4096,)), ("Linear", (4096,)), ("Linear", (1000,)),
    ]
    assert s.rows[0].formula == "(224 - 11 + 1+2)/4 + 1 = 55"
    assert s.rows[0].kernel == "11/4/1,2"
    assert all(r.formula for r in s.rows if r.kind in ("Conv2d", "MaxPool2d", "PaddedConv2d"))


def test_depth_groups_rows_and_keeps_totals():
    flat = summarize(imgcls.create_model("resnet18"))
    grouped = summarize(imgcls.create_model("resnet18"), depth=1)
    assert [r.name for r in grouped.rows] == ["conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                              "avgpool", "fc"]
    assert sum(r.macs for r in grouped.rows) == sum(r.macs for r in flat.rows) == flat.total_macs


@settings(deadline=None, max_examples=300)
@given(size=st.integers(1, 300), k=st.integers(1, 11), s=st.integers(1, 4), p=st.integers(0, 3),
       ceil=st.booleans())
def test_conv_output_size_agrees_with_torch(size, k, s, p, ceil):
    if size + 2 * p < k or p > k // 2:
        return
    x = torch.zeros(1, 1, size, 1)
    pool = nn.MaxPool2d((k, 1), (s, 1), (p, 0), ceil_mode=ceil)
    assert conv_output_size(size, k, s, p, ceil_mode=ceil) == pool(x).shape[2]
    conv = nn.Conv2d(1, 1, (k, 1), (s, 1), (p, 0))
    assert conv_output_size(size, k, s, p) == conv(x).shape[2]


def test_too_small_input_names_the_layer():
    with pytest.raises(ConfigError, match=r"3x32x32 is too small for alexnet.*features\.12 \(MaxPool2d\).*63x63"):
        summarize(imgcls.create_model("alexnet"), 32, name="alexnet")


def test_cli_summary_table_and_json(capsys):
    assert main(["summary", "resnet34"]) == 0
    out = capsys.readouterr().out
    assert "layer4.2.conv2" in out and "21,797,672" in out and "3.66 G" in out
    assert main(["summary", "resnet50", "--json", "--model-kw", "stride_in_1x1=true", "--num-classes", "5", "--depth", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert round(data["gmacs"], 2) == 3.86 and data["rows"][-1]["out_shape"] == [5]


def test_cli_errors_are_one_line(capsys):
    assert main(["summary", "resnt34"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean resnet34" in err
    assert main(["summary", "alexnet", "--input", "16"]) == 2
    assert "vanished at" in capsys.readouterr().err
    assert main(["summary", "alexnet", "--model-kw", "stride_in_1x1=true"]) == 2
    assert "does not take" in capsys.readouterr().err


def test_cli_models(capsys):
    assert main(["models", "alex*"]) == 0
    assert capsys.readouterr().out.split() == ["alexnet", "alexnet_paper"]
    assert main(["models", "lraspp*", "--task", "segmentation"]) == 0
    assert capsys.readouterr().out.split() == ["lraspp_efficientnet_lite0", "lraspp_efficientnet_lite1",
                                               "lraspp_efficientnet_lite2", "lraspp_mobilenet_v3_large"]
    assert main(["models", "*lite0", "--task", "all"]) == 0
    assert capsys.readouterr().out.split() == ["efficientnet_lite0", "fcn8s_efficientnet_lite0",
                                               "lraspp_efficientnet_lite0"]
    assert main(["models", "lraspp*"]) == 0 and capsys.readouterr().out.split() == []


def test_fcn8s_table_shows_each_transposed_convolution_with_its_output_size():
    s = summarize(imgcls.create_model("fcn8s_efficientnet_lite0", num_classes=21), 97, name="fcn8s_efficientnet_lite0")
    up = {r.name: r for r in s.rows if r.kind == "ConvTranspose2d"}
    # 97 -> 13 (stride 8) -> 7 (16) -> 4 (32) with TF 'SAME' padding; each x2 overshoots the odd map by one
    assert {n: (r.kernel, r.formula) for n, r in up.items()} == {
        "upscore2": ("4/2/1", "(4 - 1)*2 - 2*1 + 4 = 8"),
        "upscore_pool4": ("4/2/1", "(7 - 1)*2 - 2*1 + 4 = 14"),
        "upscore8": ("16/8/4", "(13 - 1)*8 - 2*4 + 16 = 104"),
    }
    assert [r.out_shape for r in up.values()] == [(21, 8, 8), (21, 14, 14), (21, 104, 104)]
    assert "N = (W - 1)*S - 2P + D*(F - 1) + output_padding + 1" in s.to_text()
    assert "ConvTranspose2d rows" not in summarize(imgcls.create_model("resnet18")).to_text()


def test_transposed_formula_counts_dilation_and_output_padding():
    up = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, dilation=2, output_padding=1)
    s = summarize(nn.Sequential(up), 5, in_chans=1)
    assert s.rows[0].out_shape == (1, 12, 12)  # (5 - 1)*2 - 2*1 + 2*(3 - 1) + 1 + 1
    assert s.rows[0].formula == "(5 - 1)*2 - 2*1 + 5 + 1 = 12"


def test_depth_shows_the_parts_of_a_module_that_never_ran_whole():
    """A segmentation model runs its backbone stage by stage: depth 1 shows what ran, totals intact."""
    model = imgcls.create_model("fcn8s_efficientnet_lite0", num_classes=21)
    grouped = summarize(model, 64, depth=1)
    assert [r.name for r in grouped.rows] == ["backbone.features", "score_fr", "upscore2", "score_pool4",
                                              "upscore_pool4", "score_pool3", "upscore8"]
    assert sum(r.params for r in grouped.rows) == grouped.total_params
    assert sum(r.macs for r in grouped.rows) == grouped.total_macs
