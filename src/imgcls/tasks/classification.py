"""Single-label classification, the first task on the seam (tasks/base.py): a class index per image,
cross-entropy (label smoothing, soft targets from mixup/cutmix), top-1 (and top-5 above 5 classes) picks
best.ckpt, and a finished run leaves report.txt/json, the confusion matrix and the curves."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data import Preprocessing, train_transform
from imgcls.data.augment import augment_steps
from imgcls.reports import EPOCH_COLUMNS, classification_report, plot_curves, reported_ks, topk_correct

log = logging.getLogger("imgcls")


class Classification:
    """One image, one class of `classes`."""

    name = "classification"
    score = "val_top1"

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)
        self.ks = reported_ks(len(self.classes))  # top-5 only with more than 5 classes

    @staticmethod
    def transforms(data: Any, *, train_crop: int, preprocessing: Preprocessing) -> tuple[Any, Any]:
        """(train, eval) transforms producing uint8 HWC arrays from a DataConfig and the run's eval
        preprocessing; batches are normalised on the device. `train_crop` is the loader's crop (the END
        size under --progressive)."""
        extra = augment_steps(data.auto_augment, randaugment_ops=data.randaugment_ops,
                              randaugment_magnitude=data.randaugment_magnitude, random_erasing=data.random_erasing,
                              mean=data.mean)
        train = train_transform(crop=train_crop, scale=tuple(data.scale), hflip=data.hflip, mean=data.mean,
                                std=data.std, interpolation=data.interpolation, color_jitter=data.color_jitter,
                                uint8=True, extra=extra)
        return train, preprocessing.eval_transform()

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores about the task beside the class names."""
        return {"task": self.name}

    def criterion(self, *, label_smoothing: float = 0.0) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)  # takes soft (mixed) targets too

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
        """{prefix}val_loss and {prefix}val_top{k} of one pass over the validation set."""
        loss = float(nn.functional.cross_entropy(logits, targets))
        hits = topk_correct(logits, targets, ks=self.ks)
        return {f"{prefix}val_loss": loss, **{f"{prefix}val_top{k}": hits[k] / len(targets) for k in self.ks}}

    def columns(self, *, ema: bool = False) -> list[str]:
        """metrics.csv's columns; with `ema` the EMA weights' validation columns follow the raw weights'
        (ema_val_loss, ema_val_top1, ...)."""
        cols = [c for c in EPOCH_COLUMNS if not c.startswith("val_top") or int(c.removeprefix("val_top")) in self.ks]
        if ema:
            at = cols.index(f"val_top{self.ks[-1]}") + 1
            cols[at:at] = ["ema_val_loss", *(f"ema_val_top{k}" for k in self.ks)]
        return cols

    def epoch_line(self, row: dict[str, Any], *, epochs: int) -> str:
        top5 = f" top-5 {100 * row['val_top5']:.2f}%" if "val_top5" in row else ""
        ema = f"  EMA top-1 {100 * row['ema_val_top1']:.2f}%" if "ema_val_top1" in row else ""
        return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
                f"  val loss {row['val_loss']:.4f} top-1 {100 * row['val_top1']:.2f}%{top5}{ema}"
                f"  {row['epoch_seconds']:.0f}s")

    def report(self, logits: torch.Tensor, targets: torch.Tensor, *, paths: Sequence[str], run_dir: Path,
               history: Sequence[dict]) -> None:
        """report.txt/json, confusion_matrix.csv/png and curves.png of the best weights."""
        classification_report(logits, targets, self.classes, paths=list(paths)).save(run_dir)
        plot_curves(list(history), run_dir / "curves.png")


def task_class(kind: str) -> type:
    """The task of a kind; its transforms are known before the data (they need no class names), the task
    object itself is made from the classes the data holds."""
    from imgcls.tasks.segmentation import Segmentation

    tasks = {"classification": Classification, "segmentation": Segmentation}
    try:
        return tasks[kind]
    except KeyError:
        raise ValueError(f"unknown task {kind!r}; known: {', '.join(tasks)}") from None
