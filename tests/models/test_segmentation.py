"""Every segmentation model answers the SegmenterMixin questions and trains; FCN-8s's upsampling and sizes."""
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import imgcls
from imgcls.cli import main
from imgcls.errors import ConfigError
from imgcls.models import create_model, list_models
from imgcls.models.base import SegmenterMixin
from imgcls.models.layers import bilinear_upsampling
from imgcls.models.registry import get_builder, paper_of, task_of
from imgcls.models.seg_parts import SIZE_MULTIPLE, padded_forward
from imgcls.models.segmentation import fit_to

SEGMENTATION = list_models(task="segmentation")
WITH_AUX = {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large"}
# the generic FCNs on a small backbone (their default is the paper's VGG-16)
SMALL = {"fcn8s": {"backbone": "resnet18"}, "fcn16s": {"backbone": "resnet18"}, "fcn32s": {"backbone": "resnet18"}}


def _build(name: str, num_classes: int = 3) -> nn.Module:
    kw = {**SMALL.get(name, {}), **({"aux_loss": True} if name in WITH_AUX else {})}
    return create_model(name, num_classes=num_classes, **kw)


def test_registry_keeps_segmentation_apart_from_the_classifiers(capsys):
    assert {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large",
            "lraspp_mobilenet_v3_large", "fcn8s", "fcn16s", "fcn32s", "fcn8s_efficientnet_lite0",
            "lraspp_efficientnet_lite0"} <= set(SEGMENTATION)
    assert not set(SEGMENTATION) & set(list_models())  # every classification test and command: unchanged
    assert set(list_models(task=None)) == set(SEGMENTATION) | set(list_models())
    assert task_of("fcn8s") == "segmentation" and task_of("resnet18") == "classification"
    assert main(["models"]) == 0 and "fcn_resnet50" not in capsys.readouterr().out.split()
    assert create_model("lraspp_efficientnet_lite0").num_classes == 21  # the builder's default: Pascal VOC


@pytest.mark.parametrize("name", SEGMENTATION)
def test_builder_is_a_keyword_only_documented_def_with_a_paper(name):
    builder = get_builder(name)
    assert builder.__code__.co_name == name and builder.__doc__
    kinds = {p.kind for p in inspect.signature(builder).parameters.values()}
    assert kinds <= {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD}
    assert paper_of(name).ref in ("arXiv:1411.4038", "arXiv:1706.05587", "arXiv:1905.02244")


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_contract(name):
    torch.manual_seed(0)
    model = _build(name)
    assert isinstance(model, SegmenterMixin) and model.task == "segmentation" and model.num_classes == 3
    h, w = model.min_input_size[0] + 1, model.min_input_size[1] + 15  # odd sizes
    x = torch.randn(2, 3, h, w)

    # train mode: one map per class at the input's size, "aux" where built with it; every parameter
    # gets a gradient (nothing of the classifier the backbone came from is left unused)
    out = model.train()(x)
    assert sorted(out) == (["aux", "out"] if name in WITH_AUX else ["out"])
    assert all(o.shape == (2, 3, h, w) for o in out.values())
    sum(o.sum() for o in out.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]

    heads = (model.classifier_name, *model.extra_head_names)
    for head in heads:  # every class-sized layer, as the weight loaders and reset_classifier see them
        layer = model.get_submodule(head)
        assert layer.out_channels == 3 and layer.weight.shape[0 if isinstance(layer, nn.Conv2d) else 1] == 3
    for stage in model.stage_names:
        model.get_submodule(stage)
    assert [f.module for f in model.feature_info] == list(model.stage_names)

    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert all(model.get_submodule(head).out_channels == 5 for head in heads)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())  # kept
    with torch.no_grad():
        assert all(o.shape == (2, 5, h, w) for o in model.eval()(x).values())
    with pytest.raises(ConfigError, match="num_classes >= 1"):
        model.reset_classifier(0)


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_upsampling_is_bilinear_interpolation_inside_the_map(factor):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 7)
    up = bilinear_upsampling(3, factor)
    with torch.no_grad():
        got = up(x)
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert got.shape == want.shape == (1, 3, 5 * factor, 7 * factor)  # exactly factor * n
    inner = (..., slice(factor // 2, -(factor // 2)), slice(factor // 2, -(factor // 2)))
    assert torch.allclose(got[inner], want[inner], atol=1e-5)
    assert not torch.allclose(got, want, atol=1e-3)  # the border differs: zeros beyond the map, not the edge
    assert up.weight.requires_grad  # learnable, bilinear only at the start


def test_fcn8s_output_has_the_input_size_at_odd_sizes():
    with torch.no_grad():
        for name, kw in (("fcn8s_efficientnet_lite0", {}), ("fcn16s", {"backbone": "resnet18"}),
                         ("fcn32s", {"backbone": "resnet18"}), ("fcn8s", {"backbone": "vgg11"})):
            model = create_model(name, num_classes=21, **kw).eval()
            for h, w in ((97, 131), (33, 64)):
                assert model(torch.randn(1, 3, h, w))["out"].shape == (1, 21, h, w), (name, h, w)


class _Probe(nn.Module):
    """Records the size it was called with; answers a dict of maps of that size (and one non-map)."""

    def forward(self, x: torch.Tensor) -> dict:
        self.seen = tuple(x.shape[-2:])
        return {"out": x * 2, "aux": x + 1, "note": None}


def test_padded_forward_runs_whole_stride_32_cells_and_crops_every_map_back():
    probe = _Probe()
    x = torch.randn(2, 3, 45, 33)
    out = padded_forward(probe, x)
    assert probe.seen == (64, 64) and SIZE_MULTIPLE == 32
    assert torch.equal(out["out"], x * 2) and torch.equal(out["aux"], x + 1) and out["note"] is None
    same = torch.randn(1, 3, 64, 96)  # already whole cells: nothing padded
    assert torch.equal(padded_forward(probe, same)["out"], same * 2) and probe.seen == (64, 96)
    assert torch.equal(padded_forward(lambda t: t[:, :1], x), x[:, :1])  # a plain tensor output too


def test_padded_forward_is_the_network_on_the_padded_photo_cropped():
    """What a segmentation model scores for a 97x131 photo is what it scores for the photo padded with the
    mean colour (zero once normalised) to 128x160, cropped: every map of it has whole cells."""
    torch.manual_seed(0)
    model = create_model("lraspp_efficientnet_lite0", num_classes=3).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        want = model(F.pad(x, (0, 160 - 131, 0, 128 - 97)))["out"][..., :97, :131]
        got = padded_forward(model, x)["out"]
        plain = model(x)["out"]
    assert got.shape == plain.shape == (1, 3, 97, 131)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the unpadded call sees fractional cells


def test_fit_to_crops_or_pads_at_the_bottom_right():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(fit_to(x, (2, 3)), x[..., :2, :3])  # an upsampled map one larger: its last row/column go
    padded = fit_to(x, (4, 5))  # a floor-pooled backbone (VGG): one short, the edge repeated
    assert torch.equal(padded[..., :3, :4], x) and torch.equal(padded[..., 3, :4], x[..., 2, :])
    assert torch.equal(padded[..., :3, 4], x[..., :, 3])


def test_untrained_fcn8s_predicts_its_stride_32_scores_upsampled():
    """Zero-initialised skip scores (the paper's) and bilinear upsampling: FCN-8s starts as its stride-32
    scores resized bilinearly x2, x2 and x8 (what an FCN-32s says), the skips learn what to add."""
    torch.manual_seed(0)
    model = create_model("fcn8s_efficientnet_lite0", num_classes=4).eval()
    nn.init.normal_(model.score_fr.weight)
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        scores = model.score_fr(model.backbone.forward_stages(x)[-1])
        out = model(x)["out"]
    for factor in (2, 2, 8):
        scores = F.interpolate(scores, scale_factor=factor, mode="bilinear", align_corners=False)
    inner = (..., slice(64, -64), slice(64, -64))  # the borders differ (see bilinear_upsampling)
    assert out.shape == scores.shape and torch.allclose(out[inner], scores[inner], atol=1e-5 * scores.abs().max())


def test_lraspp_efficientnet_lite0_reads_stride_8_and_the_last_stage():
    model = create_model("lraspp_efficientnet_lite0", num_classes=21).eval()
    assert [(f.module, f.channels, f.reduction) for f in model.feature_info] == [
        ("backbone.features.3", 40, 8), ("backbone.features.8", 1280, 32)]
    assert model.classifier.low_classifier.in_channels == 40 and model.classifier.cbr[0].in_channels == 1280
    with torch.no_grad():
        for h, w in ((97, 131), (224, 224)):
            assert model(torch.randn(2, 3, h, w))["out"].shape == (2, 21, h, w)


def test_torchvision_models_read_the_maps_torchvision_reads():
    assert [f.module for f in create_model("fcn_resnet50", aux_loss=True).feature_info] == [
        "backbone.layer3", "backbone.layer4"]  # aux, out: both at stride 8 (dilated)
    lraspp = create_model("lraspp_mobilenet_v3_large")
    assert [(f.module, f.channels, f.reduction) for f in lraspp.feature_info] == [
        ("backbone.4", 40, 8), ("backbone.16", 960, 16)]  # the first stride-8 block, the last (dilated) one


def test_backbones_that_do_not_fit_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"stride 8.*vit_b_16|fcn8s.*stride 32"):
        create_model("fcn8s", backbone="vit_b_16")
    with pytest.raises(ConfigError, match=r"stride 32.*layer4 is at stride 8.*without dilation"):
        create_model("fcn8s", backbone="resnet50", replace_stride_with_dilation=[False, True, True])
    with pytest.raises(ConfigError, match="is a segmentation model"):
        create_model("fcn8s", backbone="fcn32s")
    with pytest.raises(ConfigError, match="unknown model 'resnet19'"):
        create_model("fcn8s", backbone="resnet19")
    with pytest.raises(TypeError, match="aux_loss"):  # LR-ASPP has no auxiliary head
        create_model("lraspp_mobilenet_v3_large", aux_loss=True)
    with pytest.raises(ConfigError, match="num_classes >= 1"):
        create_model("fcn8s_efficientnet_lite0", num_classes=0)


def test_create_model_passes_the_builders_default_class_count():
    assert imgcls.models.create_model("resnet18").fc.out_features == 1000
    assert create_model("fcn32s", backbone="resnet18").score_fr.out_channels == 21


@pytest.mark.parametrize("name, gmacs", [("lraspp_mobilenet_v3_large", 2.09), ("deeplabv3_mobilenet_v3_large", 10.45)])
def test_multiply_adds_at_520_are_torchvisions_published_gflops(name, gmacs):
    """torchvision's weights metadata: "_ops" 2.086 and 10.452 at its eval size, 520 x 520, aux head included."""
    from imgcls.analysis import summarize

    model = create_model(name, **({"aux_loss": True} if name in WITH_AUX else {}))
    assert round(summarize(model, 520).gmacs, 2) == gmacs
