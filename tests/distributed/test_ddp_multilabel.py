"""A multi-label run under torchrun (2 processes on CPU, gloo) takes the steps of one process with the same
global batch: multi-hot targets are sharded, and gathered for validation and the thresholds."""
from __future__ import annotations

import csv

import pytest
import torch

from tests.conftest import run_cli
from tests.distributed.test_ddp import _finish, _torchrun, _weights
from tests.multilabel_data import make_multilabel_csv

TRAIN = ["--model", "lenet5", "--input-size", "32", "--workers", "0", "--lr", "0.05", "--schedule", "constant",
         "--no-progress", "--no-tensorboard", "--label-sep", ";", "--epochs", "2"]


def test_two_processes_match_one_process_on_multi_label_data(tmp_path):
    labels = make_multilabel_csv(tmp_path / "data", n=32)
    args = [labels, "--images", tmp_path / "data" / "images", *TRAIN]
    code, out = _finish(_torchrun([*args, "--batch-size", 4, "--out-dir", tmp_path / "ddp"]))
    assert code == 0, out[-3000:]
    assert run_cli(["train", *args, "--batch-size", 8, "--out-dir", tmp_path / "one"]) == 0
    a, b = _weights(tmp_path / "ddp" / "exp1"), _weights(tmp_path / "one" / "exp1")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)
    ra, rb = ([r for r in csv.DictReader((tmp_path / run / "exp1" / "metrics.csv").open())] for run in ("ddp", "one"))
    for key in ("val_map", "val_loss", "train_loss"):
        assert [float(r[key]) for r in ra] == pytest.approx([float(r[key]) for r in rb], abs=1e-5)
    assert out.count("per-class thresholds (the F1-maximising one of each class on 8 val photos)") == 1
