"""imgcls.weights.reader: reading every supported file layout, safely."""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from imgcls.errors import WeightsError
from imgcls.weights import read_state_dict


def _small_state() -> dict[str, torch.Tensor]:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2)).state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_read_plain_state_dict(tmp_path):
    state = _small_state()
    torch.save(state, tmp_path / "w.pth")
    got, meta = read_state_dict(tmp_path / "w.pth")
    _assert_same(got, state)
    assert meta == {}


def test_read_imgcls_checkpoint_returns_the_rest_as_metadata(tmp_path):
    state = _small_state()
    ckpt = {"model": state, "meta": {"arch": "toy"}, "config": {"lr": 0.1}, "classes": ["a", "b"], "epoch": 3}
    torch.save(ckpt, tmp_path / "best.ckpt")
    got, meta = read_state_dict(tmp_path / "best.ckpt")
    _assert_same(got, state)
    assert meta == {"meta": {"arch": "toy"}, "config": {"lr": 0.1}, "classes": ["a", "b"], "epoch": 3}


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_read_lightning_style_and_wrapper_prefixes(tmp_path, prefix):
    state = _small_state()
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "epoch": 7}, tmp_path / "w.pt")
    got, meta = read_state_dict(tmp_path / "w.pt")
    _assert_same(got, state)
    assert meta == {"epoch": 7}


def test_read_keeps_a_prefix_that_not_every_key_has(tmp_path):
    state = {"module.weight": torch.ones(1), "other.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "w.pth")
    assert list(read_state_dict(tmp_path / "w.pth")[0]) == ["module.weight", "other.weight"]


def test_read_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    state = _small_state()
    safetensors_torch.save_file(state, tmp_path / "w.safetensors", metadata={"arch": "toy"})
    got, meta = read_state_dict(tmp_path / "w.safetensors")
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert meta == {"arch": "toy"}


def test_read_safetensors_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "w.safetensors").write_bytes(b"{}")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors` fail
    with pytest.raises(WeightsError, match="pip install safetensors"):
        read_state_dict(tmp_path / "w.safetensors")


class _NotATensor:
    pass


def test_read_refuses_corrupt_and_non_state_dict_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WeightsError, match=r"junk\.pth: cannot be read as weights: it is binary data of another "
                                           r"kind, not a PyTorch weights file"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save(_small_state(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pth: cannot be read as weights: it is damaged"):
        read_state_dict(tmp_path / "cut.pth")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list\.pth: not a state dict \(the file holds a list\)"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"lr": 0.1, "name": "x"}, tmp_path / "cfg.pth")
    with pytest.raises(WeightsError, match=r"cfg\.pth: not a state dict: entry 'lr' holds a float"):
        read_state_dict(tmp_path / "cfg.pth")
    torch.save({"w": _NotATensor()}, tmp_path / "obj.pth")
    with pytest.raises(WeightsError, match=r"obj\.pth: cannot be read as weights: it would import and run code "
                                           r"\(.*_NotATensor\); imgcls refuses"):
        read_state_dict(tmp_path / "obj.pth")
