"""The multi-label task's loss and metrics (tasks/multilabel.py)."""
import json

import pytest
import torch
from torch import nn

from imgcls.tasks.multilabel import MultiLabel, average_precision, per_class_ap


def test_average_precision_is_the_mean_precision_at_the_positives():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    positive = torch.tensor([1, 0, 1, 0, 1]).bool()
    assert average_precision(scores, positive) == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert average_precision(scores, torch.tensor([1, 1, 0, 0, 0]).bool()) == 1.0
    assert average_precision(scores, torch.zeros(5).bool()) != average_precision(scores, torch.zeros(5).bool())  # NaN
    ap = per_class_ap(torch.stack([scores, scores], 1), torch.stack([positive, torch.zeros(5).bool()], 1).float())
    assert ap[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3) and ap[1].isnan()


def test_metrics_map_f1_subset_accuracy_and_columns():
    task = MultiLabel(["road", "sky", "bicyclist"])
    targets = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 0]]).float()
    logits = torch.tensor([[3, 2, -2], [2, -1, 1], [1, 3, -1], [-2, 2, -3]]).float()
    m = task.metrics(logits, targets)
    # road: its three positives scored highest, AP 1
    sky = average_precision(logits[:, 1], targets[:, 1] > 0)
    bicyclist = average_precision(logits[:, 2], targets[:, 2] > 0)  # scored 2nd of 4: precision 1/2
    assert bicyclist == 0.5 and m["val_map"] == pytest.approx((1 + sky + 0.5) / 3)
    assert m["val_map_micro"] == pytest.approx(average_precision(logits.flatten(), targets.flatten() > 0))
    # predicted sets: {road, sky}, {road, bicyclist}, {road, sky}, {sky}: images 1 and 4 exactly right
    assert m["val_subset_acc"] == 0.5
    f1 = [1.0, 1.0, 0.0]  # road 3/3, sky 3/3, bicyclist: one false positive, one miss
    assert m["val_f1"] == pytest.approx(sum(f1) / 3)
    assert m["val_loss"] == pytest.approx(float(nn.functional.binary_cross_entropy_with_logits(logits, targets)))
    assert set(task.metrics(logits, targets, prefix="ema_")) <= set(task.columns(ema=True)) and task.score == "val_map"
    assert task.hits(logits, targets) == pytest.approx(1 + 2 / 3 + 2 / 3 + 1)  # the share of classes right


def test_the_loss_takes_mixed_targets_smoothing_and_positive_weights():
    task = MultiLabel(["a", "b"])
    logits, target = torch.tensor([[1.0, -1.0], [0.5, 2.0]]), torch.tensor([[1.0, 0.0], [0.3, 0.7]])
    plain = task.criterion()
    assert plain(logits, target) == pytest.approx(float(nn.functional.binary_cross_entropy_with_logits(logits, target)))
    smoothed = task.criterion(label_smoothing=0.2)
    assert smoothed(logits, target) == pytest.approx(float(nn.functional.binary_cross_entropy_with_logits(
        logits, target * 0.8 + 0.1)))
    weighted = task.criterion(pos_weight=[3.0, 1.0])
    assert weighted(logits, target) == pytest.approx(float(nn.functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor([3.0, 1.0]))))
    loss, main = task.loss((logits, logits), target, plain, aux_weight=0.3)
    assert main is logits and loss == pytest.approx(1.3 * float(plain(logits, target)))


def test_the_report_lists_each_class(tmp_path):
    task = MultiLabel(["road", "sky"])
    targets = torch.tensor([[1, 0], [1, 1], [0, 1]]).float()
    logits = torch.tensor([[2, -1], [1, 1], [-1, 2]]).float()
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_map": 1.0, "lr": 0.1}]
    task.report(logits, targets, paths=["a", "b", "c"], run_dir=tmp_path, history=history)
    text = (tmp_path / "report.txt").read_text()
    assert "road" in text and "mAP 100.00% (micro 100.00%)" in text and "subset accuracy 100.00%" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["support"] for c in report["per_class"]] == [2, 2] and (tmp_path / "curves.png").is_file()
