"""One entry point for every model source: open_source decides once what a source is, and Predictor.load
takes a registry weights name (ImageNet classes) as it takes a checkpoint; a name that is neither is one
line with the close matches."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import imgcls.checkpoint
from imgcls.checkpoint import source_kind
from imgcls.data import eval_transform, load_array
from imgcls.errors import CheckpointError
from imgcls.paths import bundled_photos
from imgcls.inference import Predictor, open_source
from imgcls.serve import open_model
from imgcls.weights import get_weight_spec, imagenet_categories
from tests.conftest import run_cli


def test_imagenet_categories_are_torchvisions_names():
    names = imagenet_categories()
    assert len(names) == 1000 and names[:3] == ["tench", "goldfish", "great white shark"]
    assert names[985] == "daisy" and names[134] == names[517] == "crane"


def test_predict_with_a_weights_name_gives_imagenet_classes(capsys):
    daisy = sorted((bundled_photos() / "daisy").glob("*.jpg"))[0]
    predictor = Predictor.load("efficientnet_lite0.in1k")
    assert predictor.backend == "pytorch" and len(predictor.classes) == 1000
    assert predictor.preprocessing.crop == 224 and predictor.preprocessing.mean[0] == pytest.approx(127 / 255)
    pred = predictor.predict(daisy, topk=3)[0]
    assert pred.label == "daisy" and pred.indices[0] == 985 and pred.probs[0] > 0.5
    assert run_cli(["predict", "efficientnet_lite0.in1k", daisy, "--json", "--topk", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["label"] == "daisy"


def test_predict_with_lite0_weights_crops_the_central_224_of_256_bicubic(monkeypatch):
    # the photo is 128 px: resize 256 then crop 224 keeps the central 7/8, what TensorFlow's eval of the
    # weights keeps; the spec before issue 22 resized to 224 and kept all of it
    photo = sorted((bundled_photos() / "daisy").glob("*.jpg"))[0]
    expected = eval_transform(resize=256, crop=224, interpolation="bicubic", uint8=True)(load_array(photo))
    seen = []
    forward = Predictor._forward
    monkeypatch.setattr(Predictor, "_forward", lambda self, images: seen.append(images) or forward(self, images))
    assert run_cli(["predict", "efficientnet_lite0.in1k", str(photo)]) == 0
    assert len(seen) == 1 and np.array_equal(seen[0][0].numpy(), expected)


def test_source_kind_follows_the_file(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    (tmp_path / "ckpt.onnx").write_bytes(b"PK\x03\x04rest")  # a torch zip under an .onnx name
    assert source_kind(tmp_path / "m.onnx") == "onnx" and source_kind(tmp_path / "ckpt.onnx") == "checkpoint"
    assert source_kind("resnet18.tv_in1k") == "weights"
    with pytest.raises(CheckpointError, match="no such checkpoint or ONNX file, and unknown weights 'resnet19'"):
        source_kind("resnet19")
    with pytest.raises(CheckpointError, match="is a folder"):
        source_kind(tmp_path)


def test_a_weights_name_builds_the_model_its_file_needs():
    from imgcls.checkpoint import build_model
    from imgcls.weights import get_weight_spec

    spec = get_weight_spec("googlenet.tv_in1k")  # torchvision's file expects transform_input=True
    assert spec.model_kwargs == {"transform_input": True} and get_weight_spec("resnet18").model_kwargs == {}
    assert build_model({"model": spec.arch, "num_classes": 1000, "model_kwargs": spec.model_kwargs}).transform_input


def counted_source_kind(monkeypatch) -> list:
    """The sources checkpoint.source_kind is asked about from now on, by any module of imgcls."""
    original, calls = imgcls.checkpoint.source_kind, []

    def counted(source):
        calls.append(source)
        return original(source)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("imgcls") and getattr(module, "source_kind", None) is original:
            monkeypatch.setattr(module, "source_kind", counted)
    return calls


def test_a_source_is_opened_once_and_predictor_and_serve_work_from_it(tiny_run, monkeypatch):
    _, ckpt = tiny_run
    calls = counted_source_kind(monkeypatch)
    source = open_source(ckpt)
    assert calls == [ckpt] and source.kind == "checkpoint" and source.name == str(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert source.classes == tuple(state["classes"]) and source.arch == state["arch"] and source.best == state["best"]
    assert source.preprocessing.to_dict() == state["preprocessing"]  # the file's dict, as train wrote it
    assert source.runner is None and not source.network.training and source.task == "classification"
    calls.clear()
    predictor = Predictor.load(ckpt)
    assert len(calls) == 1 and predictor.preprocessing == source.preprocessing
    calls.clear()
    assert open_model(ckpt, device="cpu").card()["architecture"] == "resnet18" and len(calls) == 1
    calls.clear()
    again = Predictor.load(source, device="cpu")
    assert calls == [] and again.classes == list(source.classes) and again.model is source.network


def test_a_weights_name_opens_as_its_model_with_imagenet_classes(monkeypatch):
    calls = counted_source_kind(monkeypatch)
    source = open_source("efficientnet_lite0")  # the bare model name: its registered weights
    assert calls == ["efficientnet_lite0"] and source.kind == "weights" and source.name == "efficientnet_lite0.in1k"
    assert len(source.classes) == 1000 and source.arch["model"] == "efficientnet_lite0" and source.best == {}
    assert source.preprocessing == get_weight_spec("efficientnet_lite0.in1k").preprocessing
