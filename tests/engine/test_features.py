"""Head-only transfer's backbone pass (engine/features.py): which backend runs it, and that ONNX Runtime's
features are PyTorch's."""
import logging

import pytest
import torch
from torch import nn

import imgcls
from imgcls.engine import Config, train
from imgcls.engine import features
from imgcls.engine.features import CheckedRunner, backbone_runner
from imgcls.errors import ConfigError, ExportError, TrainingError

from tests.engine.test_trainer import _final_weights, tiny_config


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()).eval()


def _cfg(backend: str) -> Config:
    cfg = Config()
    cfg.data.feature_backend, cfg.data.input_size = backend, 16
    return cfg


def test_auto_uses_onnx_runtime_only_where_it_pays(monkeypatch):
    net, cpu = _net(), torch.device("cpu")
    assert backbone_runner(net, _cfg("torch"), cpu, images=10_000) is net
    assert backbone_runner(net, _cfg("auto"), cpu, images=features.AUTO_MIN_IMAGES - 1) is net
    assert backbone_runner(net, _cfg("auto"), torch.device("cuda"), images=10_000) is net  # the GPU runs it
    runner = backbone_runner(net, _cfg("auto"), cpu, images=features.AUTO_MIN_IMAGES)
    assert isinstance(runner, CheckedRunner) and runner.backend == "onnxruntime"
    monkeypatch.setattr("imgcls.export.graph.available", lambda: False)  # imgcls[export] not installed
    assert backbone_runner(net, _cfg("auto"), cpu, images=10_000) is net


def test_onnx_runtime_features_equal_pytorch_features_for_channels_last_batches():
    net = _net()
    runner = backbone_runner(net, _cfg("onnxruntime"), torch.device("cpu"), images=1)
    x = torch.randn(5, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net(x)
        for _ in range(2):  # the first call is checked against PyTorch, the second runs ONNX Runtime alone
            got = runner(x)
            assert got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert runner.checked and runner.backend == "onnxruntime"


def test_a_backend_that_disagrees_falls_back_under_auto_and_stops_when_asked(caplog):
    net = _net()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = net(x)
        wrong = CheckedRunner(lambda b: net(b) + 1.0, net, strict=False)
        with caplog.at_level(logging.WARNING, logger="imgcls"):
            assert torch.equal(wrong(x), ref)
        assert "differ from PyTorch's on the first batch" in caplog.text and "using PyTorch" in caplog.text
        assert wrong.backend == "torch" and torch.equal(wrong(x), ref)  # PyTorch from then on
        with pytest.raises(TrainingError, match="use --feature-backend torch"):
            CheckedRunner(lambda b: net(b) * float("nan"), net, strict=True)(x)

        def broken(b):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code")

        with caplog.at_level(logging.WARNING, logger="imgcls"):
            assert torch.equal(CheckedRunner(broken, net, strict=False)(x), ref)
        assert "failed on the first batch of backbone features ([ONNXRuntimeError] : 6" in caplog.text
        with pytest.raises(TrainingError, match="failed on the first batch"):
            CheckedRunner(broken, net, strict=True)(x)


def test_an_export_that_fails_is_a_warning_under_auto_and_an_error_when_asked(monkeypatch, caplog):
    def refuse(*a, **k):
        raise ExportError("torch.onnx.export could not export Sequential: unsupported op")

    monkeypatch.setattr("imgcls.export.graph.OrtFunction", refuse)
    net, cpu = _net(), torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        assert backbone_runner(net, _cfg("auto"), cpu, images=10_000) is net
    assert "ONNX Runtime cannot run this backbone" in caplog.text
    with pytest.raises(ExportError, match="could not export"):
        backbone_runner(net, _cfg("onnxruntime"), cpu, images=10)
    with pytest.raises(ConfigError, match="runs the backbone on the CPU"):
        backbone_runner(net, _cfg("onnxruntime"), torch.device("cuda"), images=10)


def test_a_head_trained_on_onnx_runtime_features_matches_one_trained_on_pytorch_features(tiny_folder, tmp_path):
    torch.manual_seed(3)
    torch.save(imgcls.create_model("resnet18", num_classes=1000).state_dict(), tmp_path / "pre.pth")
    runs = {}
    for backend in ("torch", "onnxruntime"):
        cfg = tiny_config(tiny_folder, tmp_path / backend, weights=str(tmp_path / "pre.pth"), transfer="head",
                          feature_backend=backend)
        result = train(cfg)
        log = (result.run_dir / "train.log").read_text()
        assert "cached backbone features: 27 train x 1 view(s), 9 val, 512-wide" in log and f"({backend})" in log
        runs[backend] = (_final_weights(result.run_dir), result.history)
    (w_torch, h_torch), (w_ort, h_ort) = runs["torch"], runs["onnxruntime"]
    assert torch.allclose(w_torch["fc.weight"], w_ort["fc.weight"], atol=1e-4)
    for a, b in zip(h_torch, h_ort):
        assert a["val_top1"] == b["val_top1"] and a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_onnx_runtime_where_it_cannot_run_is_refused_before_any_work(monkeypatch, tiny_folder, tmp_path):
    features.check_backend("auto", torch.device("cuda"))  # auto and torch never refuse
    monkeypatch.setattr("imgcls.export.graph.available", lambda: False)
    with pytest.raises(ConfigError, match=r"needs onnx, onnxscript and onnxruntime: pip install 'imgcls\[export\]'"):
        features.check_backend("onnxruntime", torch.device("cpu"))
    cfg = tiny_config(tiny_folder, tmp_path / "runs", transfer="head", feature_backend="onnxruntime")
    with pytest.raises(ConfigError, match="--feature-backend onnxruntime needs"):
        train(cfg)
    assert not (tmp_path / "runs").exists()
