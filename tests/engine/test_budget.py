"""engine/budget.py: every pixel size of a config bounded by the model, MAX_SIDE and the memory one training
step needs, checked by Config.validate() before any work; the memory is patched, so no test depends on
the machine it runs on."""
from __future__ import annotations

import re

import pytest

from imgcls.demo import demo_config
from imgcls.engine import budget
from imgcls.engine.config import Config
from imgcls.errors import ConfigError
from imgcls.limits import MAX_SIDE


def config(model: str = "resnet18", **data) -> Config:
    cfg = Config()
    cfg.model.model, cfg.data.data, cfg.train.device = model, "unused", "cpu"
    for key, value in data.items():
        cfg.set(key, value)
    return cfg


@pytest.fixture
def memory(monkeypatch):
    """memory(bytes): the memory the run's device has (None: the system does not say)."""
    def set_memory(room: float | None) -> None:
        where = None if room is None else (room, f"this machine has {room / 1e9:.1f} GB available")
        monkeypatch.setattr(budget, "_device_memory", lambda device, processes: where)
        monkeypatch.setattr(budget, "available_memory", lambda: room)
    return set_memory


@pytest.mark.parametrize("model, data", [
    ("resnet50", {}), ("resnet18", {}), ("efficientnet_lite0", {}), ("mobilenet_v3_large", {"batch_size": 64}),
    ("efficientnet_lite0", {"transfer": "head", "input_size": 128}),
])
def test_ordinary_runs_fit_a_laptop(memory, model, data):
    memory(8e9)
    config(model, **data).validate()  # 224 px, batch 32 unless given


def test_the_demo_fits_a_laptop(memory):
    memory(8e9)
    demo_config().validate()


def test_a_step_beyond_memory_names_its_need_and_sizes_that_fit(memory):
    memory(2e9)
    with pytest.raises(ConfigError) as e:
        config(input_size=1024).validate()
    msg = str(e.value)
    assert msg.startswith("--input-size 1024: one training step of resnet18 at 1024 px with --batch-size 32 needs "
                          "about ") and "this machine has 2.0 GB available" in msg
    side, batch = (int(n) for n in re.search(r"use at most --input-size (\d+) or --batch-size (\d+)$", msg).groups())
    assert side % 32 == 0 and 1 <= batch < 32
    config(input_size=side).validate()  # the hints are right: they fit, and a step more does not
    config(input_size=1024, batch_size=batch).validate()
    with pytest.raises(ConfigError, match="needs about"):
        config(input_size=side + 32).validate()
    with pytest.raises(ConfigError, match="needs about"):
        config(input_size=1024, batch_size=batch + 1).validate()


def test_half_precision_and_optimizer_state_count(memory):
    memory(2e9)
    side = int(re.search(r"--input-size (\d+) or", _refusal(config(input_size=1024))).group(1))
    bf16 = int(re.search(r"--input-size (\d+) or", _refusal(config(input_size=2048, amp="bf16"))).group(1))
    assert bf16 > side  # activations in 2 bytes: about 1.4x the side
    vgg = _refusal(config("vgg16", input_size=224, batch_size=1, optimizer="adamw"))
    assert "vgg16's weights, gradients and optimizer state alone need about 2.1 GB" in vgg


def _refusal(cfg: Config) -> str:
    with pytest.raises(ConfigError) as e:
        cfg.validate()
    return str(e.value)


@pytest.mark.parametrize("room", [None, 1e15])
def test_a_side_above_max_side_is_refused_whatever_the_memory(memory, room):
    memory(room)
    msg = _refusal(config(input_size=20000))
    assert "one training step of resnet18 at 20000 px with --batch-size 32 needs about 7.4 TB" in msg
    assert msg.endswith(f"imgcls takes sides up to {MAX_SIDE} px; use at most --input-size {MAX_SIDE}")


def test_progressive_blames_its_end(memory):
    memory(2e9)
    msg = _refusal(config(input_size=224, progressive="64:20000"))
    assert msg.startswith("--progressive 64:20000: one training step of resnet18 at 20000 px")
    end = int(re.search(r"use at most --progressive 64:(\d+)$", msg).group(1))
    config(input_size=224, progressive=f"64:{end}").validate()


def test_a_fixed_input_size_is_the_only_one(memory):
    memory(8e9)
    assert _refusal(config("lenet5", input_size=64)) == "--input-size 64: lenet5 takes only 32x32 inputs; use --input-size 32"
    assert "lenet5 takes only 32x32 inputs, so its train size cannot grow; drop --progressive" in _refusal(
        config("lenet5", input_size=32, progressive="32:64"))
    config("lenet5", input_size=32, resize_size=36).validate()  # resize, then the 32 px centre crop
    config("vit_b_32", input_size=224, resize_size=256, batch_size=8).validate()  # the published weights' eval
    assert _refusal(config("vit_b_32", input_size=256)).endswith("vit_b_32 takes only 224x224 inputs; use --input-size 224")
    assert _refusal(config("vit_b_32", model_kwargs={"image_size": 8192}, input_size=8192)) == (
        "--model-kw: vit_b_32's input size 8192: must be between 1 and 4096 px")


def test_the_other_sides_are_bounded(memory):
    memory(None)
    assert _refusal(config(resize_size=5000)) == "--resize-size 5000: must be between 1 and 4096 px"
    assert _refusal(config(cache_side=9000)) == "--cache-side 9000: must be between 1 and 4096 px"
    # the evaluation resize derived from the input size is what a checkpoint records: it is bounded too
    assert _refusal(config(input_size=3600)).endswith("evaluation resizes to input / 0.875 = 4114 px, above the "
                                                      "largest side imgcls takes (4096 px); give --resize-size "
                                                      "between 3600 and 4096")
    config(input_size=3600, resize_size=4096).validate()


def test_the_feature_cache_fits_in_memory(memory):
    memory(1e9)
    cfg = config(transfer="head", feature_views=1000)
    with pytest.raises(ConfigError) as e:
        budget.check_feature_cache(cfg, 1000, 100)
    msg = str(e.value)
    # float32 features of 512: (1000 x 1000 + 100) x 2048 bytes, written into one tensor
    assert msg.startswith("--feature-views 1000: caching 1000 view(s) of 1000 training images needs about 2.0 GB")
    most = int(re.search(r"use at most --feature-views (\d+), or --feature-views 0", msg).group(1))
    cfg.data.feature_views = most
    budget.check_feature_cache(cfg, 1000, 100)
    cfg.data.feature_views = most + 1
    with pytest.raises(ConfigError):
        budget.check_feature_cache(cfg, 1000, 100)
    memory(None)  # unknown: nothing to compare with
    budget.check_feature_cache(config(transfer="head", feature_views=10**9), 1000, 100)


def test_the_frozen_maps_of_last_fit_in_memory(memory):
    memory(1e9)
    cfg = config(transfer="last:layer4,fc", input_size=224, feature_views=10)  # layer3's maps: 256 x 14 x 14
    with pytest.raises(ConfigError) as e:
        budget.check_feature_cache(cfg, 1000, 100)
    per = 256 * 14 * 14 * 2
    most = int((1e9 / per - 100) // 1000)
    assert str(e.value) == (f"--feature-views 10: caching 10 view(s) of 1000 training images as 256 x 14 x 14 float16 "
                            f"maps needs about {budget.human_bytes(10100 * per)}, and this machine has "
                            f"{budget.human_bytes(1e9)} available; use at most --feature-views {most}, a smaller "
                            "--input-size, or --feature-views 0 (the frozen part then runs every step)")
    cfg.data.feature_views = most
    budget.check_feature_cache(cfg, 1000, 100)
    cfg.data.map_dtype = "float32"  # twice the bytes
    with pytest.raises(ConfigError, match="as 256 x 14 x 14 float32 maps"):
        budget.check_feature_cache(cfg, 1000, 100)
    # no split (the first trainable module is the first one run): nothing is cached, nothing to bound
    budget.check_feature_cache(config(transfer="last:conv1,bn1,layer1,layer2,layer3,layer4,fc", input_size=224,
                                      feature_views=10**6), 1000, 100)


def test_processes_on_one_machine_share_its_memory(monkeypatch):
    import torch

    monkeypatch.setattr(budget, "available_memory", lambda: 8e9)
    assert budget._device_memory(torch.device("cpu"), 1) == (8e9, "this machine has 8.0 GB available")
    assert budget._device_memory(torch.device("cpu"), 4) == (
        2e9, "this machine has 8.0 GB available, 2.0 GB for each of its 4 processes")
