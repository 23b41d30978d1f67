"""The classification task's loss, metrics and columns (tasks/classification.py)."""
import pytest
import torch
from torch import nn

from imgcls.tasks import Classification
from imgcls.tasks.classification import RECALL_COLUMNS, WeightedCrossEntropy


def _logits(preds, classes):
    return nn.functional.one_hot(torch.tensor(preds), classes).float() * 5


def test_balanced_accuracy_macro_f1_and_recall_per_class_beside_top1():
    task = Classification(["big", "small"])
    # 8 big (all right), 2 small (1 right): top-1 90%, recalls 1 and 0.5
    targets = torch.tensor([0] * 8 + [1] * 2)
    m = task.metrics(_logits([0] * 8 + [1, 0], 2), targets)
    assert m["val_top1"] == pytest.approx(0.9) and m["val_balanced_acc"] == pytest.approx(0.75)
    assert m["val_recall_big"] == 1.0 and m["val_recall_small"] == 0.5
    f1_big, f1_small = 2 * 8 / (8 + 9), 2 * 1 / (2 + 1)
    assert m["val_macro_f1"] == pytest.approx((f1_big + f1_small) / 2)
    ema = task.metrics(_logits([0] * 10, 2), targets, prefix="ema_")
    assert ema["ema_val_balanced_acc"] == 0.5 and ema["ema_val_recall_small"] == 0.0 and ema["ema_val_macro_f1"] > 0
    assert set(m) | set(ema) <= set(task.columns(ema=True))


def test_columns_keep_their_order_and_name_every_class_up_to_a_limit():
    task = Classification(["a", "b", "c"])
    assert task.columns() == ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_top1", "val_balanced_acc",
                              "val_macro_f1", "val_recall_a", "val_recall_b", "val_recall_c", "lr", "epoch_seconds",
                              "train_img_s"]
    ema = task.columns(ema=True)
    assert ema[ema.index("val_recall_c") + 1:ema.index("lr")] == [
        "ema_val_loss", "ema_val_top1", "ema_val_balanced_acc", "ema_val_macro_f1", "ema_val_recall_a",
        "ema_val_recall_b", "ema_val_recall_c"]
    many = Classification([f"k{i}" for i in range(RECALL_COLUMNS + 1)])
    assert "val_top5" in many.columns() and not any(c.startswith("val_recall_") for c in many.columns())
    assert many.metrics(torch.randn(4, RECALL_COLUMNS + 1), torch.tensor([0, 1, 2, 3])).keys() == {
        "val_loss", "val_top1", "val_top5", "val_balanced_acc", "val_macro_f1"}


def test_the_metric_names_the_score_column():
    assert Classification(["a", "b"]).score == "val_top1"
    assert Classification(["a", "b"], metric="macro_f1").score == "val_macro_f1"
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        Classification(["a", "b"], metric="f1")


def test_class_weights_weigh_each_image_by_its_class_with_smoothing_and_mixed_targets():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    w = torch.tensor([2.0, 0.5, 0.5])
    task = Classification(["a", "b", "c"])
    assert isinstance(task.criterion(), nn.CrossEntropyLoss)  # no weights: the plain loss, as before
    crit = task.criterion(class_weights=[2.0, 0.5, 0.5])
    per_image = nn.functional.cross_entropy(logits, y, reduction="none")
    assert crit(logits, y) == pytest.approx(float((w[y] * per_image).mean()))
    # one class per batch: its weight stays (torch's weighted mean would divide it out)
    only_a = torch.zeros(6, dtype=torch.long)
    assert crit(logits, only_a) == pytest.approx(2 * float(nn.functional.cross_entropy(logits, only_a)))
    # a soft (mixup/cutmix) target weighs each class's share; one-hot soft targets equal hard ones
    assert crit(logits, nn.functional.one_hot(y, 3).float()) == pytest.approx(float(crit(logits, y)))
    soft = torch.tensor([[0.7, 0.3, 0.0]] * 6)
    want = -(soft * w * logits.log_softmax(1)).sum(1).mean()
    assert crit(logits, soft) == pytest.approx(float(want))
    # label smoothing: the smoothed target, weighted the same way
    smoothed = task.criterion(label_smoothing=0.1, class_weights=[2.0, 0.5, 0.5])
    target = nn.functional.one_hot(y, 3).float() * 0.9 + 0.1 / 3
    assert smoothed(logits, y) == pytest.approx(float(-(target * w * logits.log_softmax(1)).sum(1).mean()), rel=1e-5)
    assert isinstance(crit, WeightedCrossEntropy)
