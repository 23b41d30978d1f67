"""engine.build: a run's preprocessing comes from its registered weights' spec (the one source)."""
import pytest

import imgcls.weights
from imgcls.engine import Config, plan
from imgcls.engine.build import preprocessing, take_weight_preprocessing


def _cfg(**data) -> Config:
    cfg = Config()
    cfg.model.model, cfg.model.weights = "resnet50", "resnet50.tv2_in1k"
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_registered_weights_bring_their_eval_preprocessing():
    cfg = _cfg()
    taken = take_weight_preprocessing(cfg, set())
    assert preprocessing(cfg.data).resize == 232 and preprocessing(cfg.data).crop == 224
    assert "resize_size=232" in taken
    cfg = _cfg(input_size=112)
    take_weight_preprocessing(cfg, {"input_size"})
    assert preprocessing(cfg.data).resize == 116  # the spec's 232/224 ratio at the size the run uses
    cfg = _cfg(resize_size=250, interpolation="bicubic")
    take_weight_preprocessing(cfg, {"resize_size", "interpolation"})
    assert preprocessing(cfg.data).resize == 250 and cfg.data.interpolation == "bicubic"  # given flags win


def test_a_weight_file_brings_nothing(tmp_path):
    cfg = _cfg()
    cfg.model.weights = str(tmp_path / "mine.pth")
    (tmp_path / "mine.pth").write_bytes(b"x")
    assert take_weight_preprocessing(cfg, set()) == [] and preprocessing(cfg.data).resize == 256


def test_a_run_with_tv2_weights_records_resize_232(tiny_folder, tmp_path, monkeypatch):
    # the weight file cannot be downloaded here: hand the trainer a state dict of the right shape
    model = imgcls.create_model("resnet50", num_classes=1000)
    monkeypatch.setattr(imgcls.weights, "resolve_weights", lambda name, **kw: tmp_path / "resnet50-11ad3fa6.pth")
    monkeypatch.setattr(imgcls.weights, "read_state_dict", lambda path: (model.state_dict(), {}))
    cfg = _cfg()
    cfg.data.data, cfg.data.workers, cfg.data.val_fraction = str(tiny_folder), 0, 0.25
    cfg.model.transfer, cfg.train.out_dir, cfg.train.progress = "head", str(tmp_path / "runs"), False
    p = plan(cfg)
    assert preprocessing(p.config.data).to_dict() == {"resize": 232, "crop": 224, "mean": [0.485, 0.456, 0.406],
                                                      "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}
    assert any("preprocessing of resnet50.tv2_in1k: input_size=224, resize_size=232" in n for n in p.notes)
    assert cfg.data.resize_size is None  # the caller's config is left as it was: the plan holds a new one


@pytest.mark.parametrize("name", ["resnet50.tv_in1k", "resnet18.tv_in1k"])
def test_v1_weights_keep_resize_256(name):
    cfg = _cfg()
    cfg.model.weights = name
    take_weight_preprocessing(cfg, set())
    assert preprocessing(cfg.data).resize == 256


def test_efficientnet_lite_weights_bring_the_tf_lite_input_convention():
    cfg = Config()
    cfg.model.model, cfg.model.weights = "efficientnet_lite1", "efficientnet_lite1.in1k"
    take_weight_preprocessing(cfg, set())
    assert preprocessing(cfg.data).to_dict() == {"resize": 272, "crop": 240, "mean": [127 / 255] * 3,
                                                 "std": [128 / 255] * 3, "interpolation": "bicubic"}
    cfg = Config()
    cfg.model.weights = "efficientnet_lite0.in1k"
    cfg.data.input_size = 320  # --input-size 320: the weights' crop fraction, 224/256, at the size asked for
    take_weight_preprocessing(cfg, {"weights", "input_size"})
    assert (preprocessing(cfg.data).resize, preprocessing(cfg.data).crop) == (366, 320)


def test_registered_weights_name_their_model_unless_the_model_is_given():
    cfg = Config()
    cfg.model.weights = "efficientnet_lite0.in1k"  # --model left at its default
    assert "model=efficientnet_lite0" in take_weight_preprocessing(cfg, {"weights"})
    assert cfg.model.model == "efficientnet_lite0"
    cfg = Config()
    cfg.model.model, cfg.model.weights = "resnet18", "efficientnet_lite0.in1k"
    assert not any(t.startswith("model=") for t in take_weight_preprocessing(cfg, {"model", "weights"}))
    assert cfg.model.model == "resnet18"  # what the user asked for; the weight loader names the mismatch


def test_googlenet_weights_bring_transform_input_to_training_and_create_model(monkeypatch, tmp_path):
    cfg = Config()
    cfg.model.weights = "googlenet.tv_in1k"
    taken = take_weight_preprocessing(cfg, {"weights"})
    assert cfg.model.model == "googlenet" and cfg.model.model_kwargs == {"transform_input": True}
    assert "transform_input=True" in taken
    cfg = Config()
    cfg.model.model, cfg.model.weights = "googlenet", "googlenet.tv_in1k"
    cfg.model.model_kwargs = {"transform_input": False}  # --model-kw transform_input=false wins
    take_weight_preprocessing(cfg, {"model", "weights", "model_kwargs"})
    assert cfg.model.model_kwargs == {"transform_input": False}
    # imgcls.create_model(..., weights=NAME) builds what the file was trained with (no download here)
    import imgcls.weights.loader as loader

    reference = imgcls.create_model("googlenet", num_classes=1000, transform_input=True)
    monkeypatch.setattr(loader, "resolve_weights", lambda w: tmp_path / "googlenet-1378be20.pth")
    monkeypatch.setattr(loader, "read_state_dict", lambda path: (reference.state_dict(), {}))
    assert imgcls.create_model("googlenet", weights="googlenet.tv_in1k").transform_input is True
    assert imgcls.create_model("googlenet", weights="googlenet.tv_in1k", transform_input=False).transform_input is False


def test_lite2_weights_keep_the_cache_at_their_eval_resize():
    cfg = _cfg()
    cfg.model.weights = "efficientnet_lite2.in1k"
    taken = take_weight_preprocessing(cfg, set())
    assert cfg.data.resize_size == 292 and cfg.data.cache_side == 292 and "cache_side=292" in taken
    cfg = _cfg()
    cfg.model.weights, cfg.data.cache_side = "efficientnet_lite2.in1k", 300
    take_weight_preprocessing(cfg, {"cache_side"})
    assert cfg.data.cache_side == 300
