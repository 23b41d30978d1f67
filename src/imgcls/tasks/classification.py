"""Single-label classification, the first task on the seam (tasks/base.py): a class index per image,
cross-entropy (label smoothing, soft targets from mixup/cutmix, optional class weights), top-1 (and top-5
above 5 classes), balanced accuracy, macro-F1 and (up to RECALL_COLUMNS classes) each class's recall per
epoch; top-1 picks best.ckpt unless the run names another metric, and a finished run leaves
report.txt/json, the confusion matrix and the curves."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data import Preprocessing, train_transform
from imgcls.data.augment import augment_steps
from imgcls.data.names import safe_name
from imgcls.reports import EPOCH_COLUMNS, classification_report, plot_curves, reported_ks, topk_correct
from imgcls.reports.calibration import calibration_record

log = logging.getLogger("imgcls")

METRICS = ("top1", "balanced_acc", "macro_f1")  # what may pick best.ckpt (--metric)
RECALL_COLUMNS = 20  # classes up to which metrics.csv has a val_recall_CLASS column per class


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with per-class weights, averaged over the images (Keras' class_weight, Cui et al.'s
    class-balanced loss): an image of class c weighs w_c, a soft (mixed) or smoothed target the weighted sum
    over its classes. torch's weighted mean would divide by the batch's weights instead, so a batch of one
    class would cancel its weight out."""

    def __init__(self, weight: torch.Tensor, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target).mean()


class Classification:
    """One image, one class of `classes`."""

    name = "classification"

    def __init__(self, classes: Sequence[str], *, metric: str = "top1") -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        self.classes = list(classes)
        self.ks = reported_ks(len(self.classes))  # top-5 only with more than 5 classes
        self.score = f"val_{metric}"  # the column that picks best.ckpt
        self.recalls = ([f"val_recall_{safe_name(c)}" for c in self.classes] if len(self.classes) <= RECALL_COLUMNS
                        else [])

    @staticmethod
    def transforms(data: Any, *, train_crop: int, preprocessing: Preprocessing) -> tuple[Any, Any]:
        """(train, eval) transforms producing uint8 HWC arrays from a DataConfig and the run's eval
        preprocessing; batches are normalised on the device. `train_crop` is the loader's crop (the END
        size under --progressive)."""
        extra = augment_steps(data.auto_augment, randaugment_ops=data.randaugment_ops,
                              randaugment_magnitude=data.randaugment_magnitude, random_erasing=data.random_erasing,
                              mean=data.mean)
        if getattr(data, "whole_photo", False):  # the whole photo as eval sees it, flipped: no crop drops a label
            train = whole_photo_transform(preprocessing, hflip=data.hflip, color_jitter=data.color_jitter, extra=extra)
            return train, preprocessing.eval_transform()
        train = train_transform(crop=train_crop, scale=tuple(data.scale), hflip=data.hflip, mean=data.mean,
                                std=data.std, interpolation=data.interpolation, color_jitter=data.color_jitter,
                                uint8=True, extra=extra)
        return train, preprocessing.eval_transform()

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores about the task beside the class names."""
        return {"task": self.name}

    @staticmethod
    def outputs(net: nn.Module, x: torch.Tensor) -> Any:
        return net(x)

    def criterion(self, *, label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None) -> nn.Module:
        """Cross-entropy; it takes soft (mixed) targets too. With `class_weights` (one per class) each image's
        loss is weighted by its class (WeightedCrossEntropy)."""
        if class_weights is None:
            return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        return WeightedCrossEntropy(torch.tensor(list(class_weights), dtype=torch.float32),
                                    label_smoothing=label_smoothing)

    def loss(self, output: Any, target: torch.Tensor, criterion: nn.Module, *, aux_weight: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, main logits). A tuple output is (logits, *auxiliary logits) as GoogLeNet gives in
        training; each auxiliary loss is added with `aux_weight` (0.3 in the paper)."""
        if isinstance(output, (tuple, list)):
            logits, *aux = output
            loss = criterion(logits, target)
            for a in aux:
                if a is not None:
                    loss = loss + aux_weight * criterion(a, target)
            return loss, logits
        return criterion(output, target), output

    def hits(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        """Right predictions in a batch. With soft targets (a mixed batch) a prediction counts by the
        target's weight on the predicted class: lambda for the first image's class, 1 - lambda for the
        pasted one, so train accuracy is the expected accuracy against the mixed labels."""
        pred = logits.detach().argmax(1)
        if target.ndim == 1:
            return float((pred == target).sum())
        return float(target.gather(1, pred[:, None]).sum())

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor, *, prefix: str = "") -> dict[str, float]:
        """{prefix}val_loss (unweighted cross-entropy), val_top{k}, val_balanced_acc (the mean of the classes'
        recalls), val_macro_f1 and val_recall_CLASS of one pass over the validation set; a class without
        validation images has recall 0 (reports.metrics' convention)."""
        loss = float(nn.functional.cross_entropy(logits, targets))
        hits = topk_correct(logits, targets, ks=self.ks)
        recall, f1 = per_class_recall_f1(logits.argmax(1), targets, len(self.classes))
        return {f"{prefix}val_loss": loss, **{f"{prefix}val_top{k}": hits[k] / len(targets) for k in self.ks},
                f"{prefix}val_balanced_acc": float(recall.mean()), f"{prefix}val_macro_f1": float(f1.mean()),
                **{f"{prefix}{col}": float(r) for col, r in zip(self.recalls, recall)}}

    def val_columns(self) -> list[str]:
        """The columns of `metrics` (without prefix), in metrics.csv's order."""
        return ["val_loss", *(f"val_top{k}" for k in self.ks), "val_balanced_acc", "val_macro_f1", *self.recalls]

    def columns(self, *, ema: bool = False) -> list[str]:
        """metrics.csv's columns; with `ema` the EMA weights' validation columns follow the raw weights'
        (ema_val_loss, ema_val_top1, ...)."""
        val = self.val_columns()
        at = EPOCH_COLUMNS.index("val_loss")
        rest = [c for c in EPOCH_COLUMNS[at:] if not c.startswith("val_")]
        return [*EPOCH_COLUMNS[:at], *val, *([f"ema_{c}" for c in val] if ema else []), *rest]

    def epoch_line(self, row: dict[str, Any], *, epochs: int) -> str:
        """The epoch's log line: top-1 (top-5), and balanced accuracy and macro-F1 when they differ from top-1
        by half a point or more (an imbalance showing) or one of them picks best.ckpt."""
        top5 = f" top-5 {100 * row['val_top5']:.2f}%" if "val_top5" in row else ""
        shown = [(key, name) for key, name in (("val_balanced_acc", "balanced"), ("val_macro_f1", "macro-F1"))
                 if key in row and (key == self.score or abs(row[key] - row["val_top1"]) >= 0.005)]
        extra = "".join(f" {name} {100 * row[key]:.2f}%" for key, name in shown)
        ema_key = f"ema_{self.score}"
        ema = (f"  EMA {self.score.removeprefix('val_').replace('top1', 'top-1')} {100 * row[ema_key]:.2f}%"
               if ema_key in row else "")
        return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
                f"  val loss {row['val_loss']:.4f} top-1 {100 * row['val_top1']:.2f}%{top5}{extra}{ema}"
                f"  {row['epoch_seconds']:.0f}s")

    def report(self, logits: torch.Tensor, targets: torch.Tensor, *, paths: Sequence[str], run_dir: Path,
               history: Sequence[dict]) -> None:
        """report.txt/json, confusion_matrix.csv/png and curves.png of the best weights."""
        classification_report(logits, targets, self.classes, paths=list(paths)).save(run_dir)
        plot_curves(list(history), run_dir / "curves.png")

    def calibrate(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """The temperature fitted on the best weights' val logits, ECE before and after, and the abstain
        threshold of each stated precision (reports.calibration.calibration_record): best.ckpt keeps it."""
        return calibration_record(logits, targets)


def whole_photo_transform(preprocessing: Preprocessing, *, hflip: float, color_jitter: float, extra: Sequence[Any]
                          ) -> Any:
    """--whole-photo's train transform: the eval resize of the whole photo (no crop), a horizontal flip with
    probability `hflip`, colour jitter and the `extra` uint8 steps."""
    from imgcls.data.transforms import ColorJitter, Compose, RandomHorizontalFlip, Resize, ToUint8

    steps: list[Any] = [Resize(preprocessing.resize, preprocessing.interpolation)]
    if hflip > 0:
        steps.append(RandomHorizontalFlip(hflip))
    if color_jitter > 0:
        steps.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    return Compose([*steps, *extra, ToUint8()])


def per_class_recall_f1(preds: torch.Tensor, targets: torch.Tensor, num_classes: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """([C] recall, [C] F1) of class-index predictions; 0 where a ratio's denominator is 0."""
    t, p = targets.long().cpu(), preds.long().cpu()
    cm = torch.bincount(t * num_classes + p, minlength=num_classes ** 2).view(num_classes, num_classes).double()
    tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(support + predicted > 0, 2 * tp / (support + predicted).clamp_min(1), torch.zeros_like(tp))
    return recall, f1
