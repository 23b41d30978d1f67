"""Segmentation metrics against numbers worked out by hand, void ignored, absent classes out of the means."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imgcls.reports.seg_metrics import pixel_confusion, save_seg_report, seg_metrics

TARGET = torch.tensor([[0, 0, 1, 1], [2, 9, 0, 1]])  # 9: void
PRED = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 2]])


def test_confusion_counts_labelled_pixels_only():
    cm = pixel_confusion(PRED, TARGET, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 0]]  # rows true, columns predicted
    assert pixel_confusion(PRED[None], TARGET[None], 3).tolist() == cm.tolist()


def test_metrics_by_hand():
    m = seg_metrics(pixel_confusion(PRED, TARGET, 3))
    assert m.pixels == 7 and m.pixel_acc == pytest.approx(4 / 7)
    assert m.class_acc == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert m.mean_acc == pytest.approx(4 / 9)
    # IoU = tp / (truth + predicted - tp): 2/(3+3-2), 2/(3+3-2), 0/(1+1-0)
    assert m.iou == pytest.approx([0.5, 0.5, 0.0])
    assert m.miou == pytest.approx(1 / 3) and m.absent == []


def test_a_class_absent_from_truth_and_prediction_is_left_out_not_nan():
    m = seg_metrics(pixel_confusion(PRED, TARGET, 4))  # class 3: in neither
    assert m.iou[3] is None and m.class_acc[3] is None and m.absent == [3]
    assert m.miou == pytest.approx(1 / 3) and m.mean_acc == pytest.approx(4 / 9)
    assert not math.isnan(m.miou)
    only_predicted = seg_metrics(np.array([[3, 1], [0, 0]]))  # class 1 predicted, never true: IoU 0, counted
    assert only_predicted.iou == [0.75, 0.0] and only_predicted.miou == pytest.approx(0.375)
    assert only_predicted.class_acc == [0.75, None] and only_predicted.mean_acc == pytest.approx(0.75)


def test_empty_matrix_gives_zeros():
    m = seg_metrics(np.zeros((2, 2)))
    assert (m.miou, m.pixel_acc, m.mean_acc, m.absent) == (0.0, 0.0, 0.0, [0, 1])


def test_report_files(tmp_path):
    m = save_seg_report(pixel_confusion(PRED, TARGET, 4), ["sky", "road", "car", "bike"], tmp_path)
    text = (tmp_path / "report.txt").read_text()
    assert "mean IoU 33.33%" in text and "pixel accuracy 57.14%" in text
    assert "left out of the means (in neither the truth nor the predictions): bike" in text
    assert (tmp_path / "confusion_matrix.csv").read_text().splitlines()[1] == "sky,2,1,0,0"
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0
    assert m.absent == [3]
