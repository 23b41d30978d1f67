import random

import numpy as np
import pytest
import torch

from imgcls.engine.checkpoint import check_arch, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from imgcls.errors import CheckpointError


def test_round_trip_loads_with_weights_only(tmp_path):
    state = {"arch": {"model": "resnet18", "num_classes": 5}, "model": {"w": torch.ones(2)}, "rng": rng_state()}
    path = save_checkpoint(state, tmp_path / "runs" / "last.ckpt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "imgcls-checkpoint" and torch.equal(raw["model"]["w"], torch.ones(2))
    assert load_checkpoint(path)["arch"]["num_classes"] == 5
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="disk full .* the previous last.ckpt is intact"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_rng_states_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_bad_files_and_wrong_models_get_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a checkpoint imgcls can read"):
        load_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="pass it as --weights"):
        load_checkpoint(tmp_path / "plain.pth")
    state = {"arch": {"model": "resnet18", "num_classes": 5}}
    with pytest.raises(CheckpointError, match="is for resnet18 with 5 classes, not resnet34 with 3 classes") as e:
        check_arch(state, "x.ckpt", model="resnet34", num_classes=3)
    assert "\n" not in str(e.value)
    check_arch(state, "x.ckpt", model="resnet18", num_classes=5)
