"""The multi-label task's loss and metrics (tasks/multilabel.py)."""
import json

import pytest
import torch
from torch import nn

from imgcls.checkpoint import Calibration
from imgcls.errors import CheckpointError
from imgcls.tasks.multilabel import MultiLabel, average_precision, choose_thresholds, per_class_ap


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


def test_each_class_gets_the_threshold_that_maximises_its_f1():
    # class 0: positives at 0.9, 0.8, 0.6, a negative at 0.7 between them, negatives at 0.3, 0.2:
    #   keep 2 (>= 0.8): F1 2*2/(2+3) = 0.8; keep 4 (>= 0.6): 2*3/(4+3) = 0.857; keep all 6: 2*3/(6+3) = 0.667
    #   so the cut is between 0.6 and 0.3: threshold 0.45
    # class 1: one positive, scored lowest of all: F1 is best keeping everything (2/(6+1)), threshold at 0.05
    # class 2: no positive: 0.5
    probs = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.4, 0.1], [0.7, 0.3, 0.1], [0.6, 0.3, 0.1], [0.3, 0.2, 0.1],
                          [0.2, 0.1, 0.1]])
    truth = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]]).bool()
    assert choose_thresholds(probs, truth) == pytest.approx([0.45, 0.05, 0.5])
    # tied probabilities are never split: both 0.3 photos are kept or neither
    tied = choose_thresholds(torch.tensor([[0.9], [0.3], [0.3]]), torch.tensor([[1], [1], [0]]).bool())
    assert tied == pytest.approx([0.15])  # keeping the 0.3 pair: F1 2*2/(3+2) = 0.8 > 2*1/(1+2); half of 0.3


def test_calibrate_records_the_thresholds_and_the_report_uses_them(tmp_path):
    task = MultiLabel(["road", "sky"])
    targets = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]]).float()
    logits = torch.tensor([[2.0, -1.0], [-0.5, 1.0], [-1.0, -0.2], [-2.0, -3.0]])
    record = task.calibrate(logits, targets)
    probs = logits.sigmoid()
    assert record["fitted_on"] == 4 and record["threshold_f1"] == [1.0, 1.0]
    assert probs[1, 0] >= record["thresholds"][0] > probs[2, 0] and probs[2, 1] >= record["thresholds"][1] > probs[0, 1]
    assert "road 0." in task.calibration_line(record) and "(F1 1.00)" in task.calibration_line(record)
    calibration = Calibration.from_dict(record, where="best.ckpt")  # what best.ckpt and the ONNX metadata hold
    assert calibration.thresholds == pytest.approx(tuple(record["thresholds"]))
    assert Calibration.from_dict(calibration.to_dict(), where="x").thresholds == calibration.thresholds
    assert "thresholds" not in Calibration(1.5).to_dict()  # a classifier's record is as it was
    with pytest.raises(CheckpointError, match="best.ckpt: calibration thresholds \\[2\\]: must be a list of one "
                                              "probability in \\[0, 1\\] per class"):
        Calibration.from_dict({**record, "thresholds": [2]}, where="best.ckpt")
    with pytest.raises(CheckpointError, match="has 2 values for 3 classes"):
        calibration.thresholds_for(3, "best.ckpt")
    stored = MultiLabel(["road", "sky"], thresholds=[0.99, 0.99])  # eval: the stored thresholds, nothing passes
    numbers = stored.report(logits, targets, paths=list("abcd"), run_dir=tmp_path, history=[])
    assert numbers["f1"] == 0.0 and numbers["thresholds"] == "stored with the model"
    assert "at the per-class thresholds (stored with the model)" in (tmp_path / "report.txt").read_text()
    assert not (tmp_path / "curves.png").exists()
