"""imgcls.weights.loader: loading with head surgery, and create_model with weights."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import imgcls
from imgcls.errors import ConfigError, WeightsError
from imgcls.models.base import ClassifierMixin
from imgcls.weights import (WeightSpec, build_pretrained, create_model_with_weights, file_sha256, load_pretrained,
                            load_weights)


@pytest.fixture(scope="module")
def resnet18_in1k() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return imgcls.create_model("resnet18").state_dict()


def test_resnet18_imagenet_weights_into_a_5_class_model(resnet18_in1k):
    model = imgcls.create_model("resnet18", num_classes=5)
    fresh_fc = {k: v.clone() for k, v in model.fc.state_dict().items()}
    report = load_pretrained(model, resnet18_in1k, source="resnet18-f37072fd.pth")

    assert report.skipped_shape == [("fc.weight", (1000, 512), (5, 512)), ("fc.bias", (1000,), (5,))]
    assert report.missing == [] and report.unexpected == [] and report.head_only
    assert len(report.loaded) == len(resnet18_in1k) - 2 == report.total - 2
    text = report.to_text()
    assert text.splitlines()[0] == f"loaded {report.total - 2}/{report.total} tensors from resnet18-f37072fd.pth"
    assert ("the last layer cannot take the pretrained parameters: fc.weight is [1000, 512] in the file and "
            "[5, 512] in the model (5 classes); it starts from a fresh initialisation") in text
    state = model.state_dict()
    for key in report.loaded:  # really copied, buffers (BN running stats) included
        assert torch.equal(state[key], resnet18_in1k[key]), key
    assert all(torch.equal(model.fc.state_dict()[k], v) for k, v in fresh_fc.items())


def test_headless_model_takes_the_backbone_and_reports_the_unused_head(resnet18_in1k):
    report = load_pretrained(imgcls.create_model("resnet18", num_classes=0), resnet18_in1k)
    assert report.unexpected == ["fc.weight", "fc.bias"] and report.head_only
    assert "the file's classifier is not used" in report.to_text()


def test_alexnet_head_is_classifier_6():
    model = imgcls.create_model("alexnet", num_classes=3)
    fresh_head = model.classifier[6].weight.clone()
    # an "ImageNet file" made from the model itself (one 61M-parameter build instead of two)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    state["classifier.6.weight"], state["classifier.6.bias"] = torch.zeros(1000, 4096), torch.zeros(1000)
    report = load_pretrained(model, state)
    assert [k for k, _, _ in report.skipped_shape] == ["classifier.6.weight", "classifier.6.bias"]
    assert "classifier.6.weight is [1000, 4096] in the file and [3, 4096] in the model (3 classes)" in report.to_text()
    assert torch.equal(model.classifier[4].weight, state["classifier.4.weight"])
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.classifier[6].weight, fresh_head)


def test_resnet50_weights_into_resnet18_is_an_error(resnet18_in1k):
    state = imgcls.create_model("resnet50").state_dict()
    model = imgcls.create_model("resnet18")
    before = model.conv1.weight.clone()
    expected = (r"resnet50\.pth does not fit this ResNet \(tensors: \d+ of another shape, \d+ unexpected; "
                r"e\.g\. layer1\.0\.conv1\.weight is \[64, 64, 1, 1\] in the file and \[64, 64, 3, 3\] in the "
                r"model; unexpected .*another architecture")
    with pytest.raises(WeightsError, match=expected):
        load_pretrained(model, state, source="resnet50.pth")
    assert torch.equal(model.conv1.weight, before)  # nothing loaded


def test_weights_of_another_family_match_nothing(resnet18_in1k):
    state = {"features.0.weight": torch.zeros(64, 3, 11, 11), "classifier.6.bias": torch.zeros(1000)}
    with pytest.raises(WeightsError, match=r"none of its 2 tensors fits this ResNet .*another architecture"):
        load_pretrained(imgcls.create_model("resnet18"), state, source="alexnet.pth")


def test_missing_backbone_key_is_an_error(resnet18_in1k):
    state = dict(resnet18_in1k)
    del state["layer1.0.conv1.weight"]
    with pytest.raises(WeightsError, match=r"\(tensors: 1 missing from the file; e\.g\. missing layer1\.0\.conv1\."):
        load_pretrained(imgcls.create_model("resnet18", num_classes=5), state)


def test_remap_state_dict_is_applied_first():
    class Legacy(ClassifierMixin, nn.Module):
        classifier_name = "head"

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(2, 3)
            self.head = nn.Linear(3, 4)

        def remap_state_dict(self, state):
            return {k.replace("old_body.", "body."): v for k, v in state.items()}

    source = {"old_body.weight": torch.ones(3, 2), "old_body.bias": torch.ones(3),
              "head.weight": torch.ones(9, 3), "head.bias": torch.ones(9)}
    model = Legacy()
    report = load_pretrained(model, source)
    assert report.loaded == ["body.weight", "body.bias"] and report.head_only
    assert torch.equal(model.body.weight, torch.ones(3, 2))


def test_load_weights_from_a_file_path(tmp_path, resnet18_in1k):
    torch.save({"model": resnet18_in1k, "classes": ["a"]}, tmp_path / "run.ckpt")
    report = load_weights(imgcls.create_model("resnet18", num_classes=2), tmp_path / "run.ckpt")
    assert report.source == "run.ckpt" and report.head_only and len(report.skipped_shape) == 2


def test_googlenet_auxiliary_heads_count_as_head_when_the_classes_change():
    src = imgcls.create_model("googlenet", num_classes=1000).state_dict()
    model = imgcls.create_model("googlenet", num_classes=4)
    report = load_pretrained(model, src, source="googlenet.pth")
    skipped = {k for k, _, _ in report.skipped_shape}
    assert skipped == {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias", "aux2.fc2.weight", "aux2.fc2.bias"}
    assert torch.equal(model.aux1.fc1.weight, src["aux1.fc1.weight"])


# ---------------------------------------------------------------------------------------------
# build_pretrained: the one build-and-load path (train --weights, a weights name, imgcls.create_model)
# ---------------------------------------------------------------------------------------------

def test_build_pretrained_keeps_a_fitting_head_and_starts_another_fresh(resnet18_in1k):
    same = build_pretrained({"model": "resnet18", "num_classes": 1000}, resnet18_in1k, source="r18.pth")
    assert torch.equal(same.model.fc.weight, resnet18_in1k["fc.weight"]) and same.base_classes is None
    assert same.report.to_text().splitlines() == ["loaded 122/122 tensors from r18.pth"]
    other = build_pretrained({"model": "resnet18", "num_classes": 5, "head": "linear"}, resnet18_in1k, source="r18.pth")
    assert other.model.fc.weight.shape == (5, 512)
    assert torch.equal(other.model.layer4[1].conv2.weight, resnet18_in1k["layer4.1.conv2.weight"])
    assert "fc.weight is [1000, 512] in the file and [5, 512] in the model (5 classes)" in other.report.to_text()


def test_build_pretrained_stacks_head_plus_on_the_files_classifier(resnet18_in1k):
    built = build_pretrained({"model": "resnet18", "num_classes": 5, "head": "stacked"}, resnet18_in1k, source="r18")
    fc = built.model.fc
    assert built.base_classes == 1000 and isinstance(fc, nn.Sequential) and fc[1].weight.shape == (5, 1000)
    assert torch.equal(fc[0].weight, resnet18_in1k["fc.weight"]) and built.model.num_classes == 5
    resumed = build_pretrained({"model": "resnet18", "num_classes": 5, "head": "stacked", "base_classes": 7}, None,
                               source="none")  # a resumed run: the checkpoint's width, nothing loaded
    assert resumed.base_classes == 7 and resumed.model.fc[1].weight.shape == (5, 7) and resumed.report is None


def test_build_pretrained_strictly_names_the_target_and_bad_builder_arguments(resnet18_in1k):
    with pytest.raises(WeightsError, match=r"^r18: does not fit resnet18 with 5 classes: size mismatch for fc\.weight"):
        build_pretrained({"model": "resnet18", "num_classes": 5}, resnet18_in1k, source="r18", strict=True)
    with pytest.raises(ConfigError, match=r"^resnet18 does not take the model arguments \{'depth': 3\}"):
        build_pretrained({"model": "resnet18", "num_classes": 5, "model_kwargs": {"depth": 3}}, None, source="r18")


# ---------------------------------------------------------------------------------------------
# create_model_with_weights (imgcls.create_model)
# ---------------------------------------------------------------------------------------------

def test_create_model_reads_a_file_through_the_one_reader_and_loads_it_strictly(tmp_path):
    state = create_model_with_weights("resnet18", num_classes=5).state_dict()
    # a checkpoint layout and a DDP prefix: what read_state_dict accepts, the strict load accepts
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "classes": list("abcde")}, tmp_path / "run.ckpt")
    again = create_model_with_weights("resnet18", num_classes=5, weights=tmp_path / "run.ckpt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())
    with pytest.raises(WeightsError, match=r"run\.ckpt: does not fit resnet18 with num_classes=7: "
                                           r"size mismatch for fc\.weight"):
        create_model_with_weights("resnet18", num_classes=7, weights=str(tmp_path / "run.ckpt"))
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html><body>404</body></html>")
    with pytest.raises(WeightsError, match=r"page\.pth: cannot be read as weights: it is an HTML page"):
        create_model_with_weights("resnet18", weights=tmp_path / "page.pth")


def test_create_model_with_registered_weights_gives_a_fresh_head_for_other_classes(tmp_path, monkeypatch, caplog,
                                                                                  resnet18_in1k):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    cached = tmp_path / "weights" / "resnet18-toy.pth"
    cached.parent.mkdir()
    torch.save(resnet18_in1k, cached)
    spec = WeightSpec(name="resnet18.toy", arch="resnet18", url="http://127.0.0.1:9/resnet18-toy.pth",
                      sha256=file_sha256(cached)[:8])  # found in the cache: nothing is downloaded
    with caplog.at_level(logging.INFO, logger="imgcls.weights.loader"):
        model = create_model_with_weights("resnet18", num_classes=5, weights=spec)
    assert torch.equal(model.layer4[1].conv2.weight, resnet18_in1k["layer4.1.conv2.weight"])
    assert model.fc.weight.shape == (5, 512)
    assert "fc.weight is [1000, 512] in the file and [5, 512] in the model (5 classes)" in caplog.text


def test_models_create_model_builds_and_never_loads():
    from imgcls.models import create_model

    with pytest.raises(TypeError, match=r"builds untrained models.*imgcls\.create_model\(name, weights=\.\.\.\)"):
        create_model("resnet18", weights="resnet18.pth")
