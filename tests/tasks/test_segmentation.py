"""The segmentation task on its own: loss with the aux head and the ignore index, pixel hits, the streamed
validation tally and its metrics, the columns and class weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from imgcls.data.seg_transforms import IGNORE
from imgcls.tasks import Segmentation, task_class
from imgcls.tasks.segmentation import median_frequency_weights


def one_hot_logits(pred: torch.Tensor, n: int) -> torch.Tensor:
    return nn.functional.one_hot(pred, n).permute(0, 3, 1, 2).float() * 10


def test_task_class():
    assert task_class("segmentation") is Segmentation


def test_loss_adds_half_the_aux_loss_and_ignores_void():
    task = Segmentation(["a", "b", "c"])
    crit = task.criterion()
    torch.manual_seed(0)
    out, aux = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0] = IGNORE
    loss, logits = task.loss({"out": out, "aux": aux}, target, crit, aux_weight=0.5)
    expected = (nn.functional.cross_entropy(out, target, ignore_index=IGNORE)
                + 0.5 * nn.functional.cross_entropy(aux, target, ignore_index=IGNORE))
    assert logits is out and loss.item() == pytest.approx(expected.item())
    alone, _ = task.loss({"out": out}, target, crit, aux_weight=0.5)
    assert alone.item() == pytest.approx(nn.functional.cross_entropy(out, target, ignore_index=IGNORE).item())


def test_hits_are_pixel_accuracy_times_images():
    task = Segmentation(["a", "b"])
    target = torch.tensor([[[0, 1], [1, IGNORE]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 1]]])
    # 5 of the 7 labelled pixels right; 2 images
    assert task.hits(one_hot_logits(pred, 2), target) == pytest.approx(5 / 7 * 2)


def test_tally_sums_to_the_metrics_of_the_whole_set():
    task = Segmentation(["a", "b", "c"])
    target = torch.tensor([[[0, 0, 1, 1], [2, IGNORE, 0, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 2, 0, 2]]])
    logits = one_hot_logits(pred, 3)
    halves = task.tally({"out": logits[..., :2]}, target[..., :2]) + task.tally({"out": logits[..., 2:]}, target[..., 2:])
    whole = task.tally({"out": logits}, target)
    assert torch.allclose(halves, whole)
    m = task.tally_metrics(whole, prefix="ema_")
    assert m["ema_val_miou"] == pytest.approx(1 / 3) and m["ema_val_pixel_acc"] == pytest.approx(4 / 7)
    assert m["ema_val_mean_acc"] == pytest.approx(4 / 9)
    expected = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE).item()
    assert m["ema_val_loss"] == pytest.approx(expected, rel=1e-5)


def test_columns_and_line():
    task = Segmentation(["a", "b"])
    cols = task.columns(ema=True)
    assert cols[cols.index("val_miou") + 1] == "ema_val_loss" and "ema_val_miou" in cols and task.score == "val_miou"
    row = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 0.9, "val_miou": 0.25, "val_pixel_acc": 0.75,
           "val_mean_acc": 0.5, "epoch_seconds": 3}
    assert "mIoU 25.00%" in task.epoch_line(row, epochs=2)


def test_median_frequency_weights():
    counts = np.array([60, 30, 10, 0, 999])  # 4 classes; the last value is void
    w = median_frequency_weights(counts, 4)
    # shares 0.6, 0.3, 0.1 (median 0.3) -> 0.5, 1, 3; the class with no pixel: 1
    assert w.tolist() == pytest.approx([0.5, 1.0, 3.0, 1.0])


def test_outputs_pad_to_whole_stride_32_cells_and_crop_back():
    """Train and validation run the network through `outputs`: a val photo of 33x45 runs as 64x64."""
    seen = []

    def net(x):
        seen.append(tuple(x.shape[-2:]))
        return {"out": x[:, :2], "aux": None}

    out = Segmentation(["a", "b"]).outputs(net, torch.zeros(1, 3, 33, 45))
    assert seen == [(64, 64)] and out["out"].shape == (1, 2, 33, 45) and out["aux"] is None
