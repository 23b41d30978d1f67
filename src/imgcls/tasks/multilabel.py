"""Multi-label classification on the task seam (tasks/base.py): any number of the classes per image, a
multi-hot target [N, C] (floats: mixup/cutmix mix them as they mix one-hot vectors), one sigmoid per class
and binary cross-entropy (optional per-class positive weights), mean average precision picking best.ckpt.

Metrics of a validation pass (metrics.csv's columns):

    val_loss        binary cross-entropy, mean over images and classes
    val_map         macro mAP: the mean over the classes with at least one positive of each class's average
                    precision (AP = the mean, over the positives, of the precision among the images scored at
                    least as high; scikit-learn's average_precision_score for distinct scores)
    val_map_micro   AP of every (image, class) pair pooled
    val_f1          macro F1 with each class present when its sigmoid is >= 0.5
    val_subset_acc  the share of images whose predicted label set is exactly the true one

Per-class thresholds chosen on the val part, the CSV's `--label-sep` and predict/serve/export for this task
are not built yet (issue 26): the engine trains classification only.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data import Preprocessing
from imgcls.data.names import safe_name
from imgcls.paths import write_text_atomic
from imgcls.reports import plot_curves
from imgcls.tasks.classification import Classification

log = logging.getLogger("imgcls")

THRESHOLD = 0.5  # a class is predicted present when its sigmoid reaches this
VAL_COLUMNS = ("val_loss", "val_map", "val_map_micro", "val_f1", "val_subset_acc")


def average_precision(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """AP of one ranking: the mean over the positives of the precision at their rank (scores high first);
    NaN without positives."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    hit = positive[order].double()
    precision = hit.cumsum(0) / torch.arange(1, len(hit) + 1, dtype=torch.float64)
    return float((precision * hit).sum() / n_pos)


def per_class_ap(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[C] AP of each class (NaN for a class without positives) of [N, C] scores against 0/1 targets."""
    return torch.tensor([average_precision(scores[:, c], targets[:, c] > 0.5) for c in range(scores.shape[1])],
                        dtype=torch.float64)


def f1_per_class(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """[C] F1 of boolean [N, C] predictions; 0 where a class is neither predicted nor present."""
    tp = (pred & truth).sum(0).double()
    denominator = (pred.sum(0) + truth.sum(0)).double()
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))


class MultiLabel:
    """Any subset of `classes` per image."""

    name = "multilabel"
    score = "val_map"

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)

    @staticmethod
    def transforms(data: Any, *, train_crop: int, preprocessing: Preprocessing) -> tuple[Any, Any]:
        """Classification's: the same photos, the same augmentations (the target is not spatial)."""
        return Classification.transforms(data, train_crop=train_crop, preprocessing=preprocessing)

    def criterion(self, *, label_smoothing: float = 0.0, pos_weight: Sequence[float] | None = None) -> nn.Module:
        """Binary cross-entropy on the logits; `label_smoothing` eps moves each target towards 1/2 (eps/2 for
        an absent class, 1 - eps/2 for a present one); `pos_weight`: one weight per class for its positives."""
        weight = None if pos_weight is None else torch.tensor(list(pos_weight), dtype=torch.float32)
        return _SmoothedBCE(label_smoothing, weight)

    def loss(self, output: Any, target: torch.Tensor, criterion: nn.Module, *, aux_weight: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, *aux = output if isinstance(output, (tuple, list)) else (output,)
        loss = criterion(logits, target)
        for a in aux:
            if a is not None:
                loss = loss + aux_weight * criterion(a, target)
        return loss, logits

    def hits(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        """The batch's sum of per-image label accuracy (the share of classes decided right; a mixed target
        counts a class present from 1/2)."""
        pred = logits.detach() >= 0  # sigmoid >= 0.5
        return float((pred == (target >= 0.5)).float().mean(1).sum())

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor, *, prefix: str = "") -> dict[str, float]:
        logits, targets = logits.float().cpu(), targets.float().cpu()
        loss = float(nn.functional.binary_cross_entropy_with_logits(logits, targets))
        ap = per_class_ap(logits, targets)
        truth, pred = targets > 0.5, logits.sigmoid() >= THRESHOLD
        values = {"val_loss": loss, "val_map": float(ap.nanmean()) if not ap.isnan().all() else 0.0,
                  "val_map_micro": average_precision(logits.flatten(), truth.flatten()),
                  "val_f1": float(f1_per_class(pred, truth).mean()),
                  "val_subset_acc": float((pred == truth).all(1).double().mean())}
        return {f"{prefix}{k}": (0.0 if v != v else v) for k, v in values.items()}  # NaN (no positive at all): 0

    def columns(self, *, ema: bool = False) -> list[str]:
        return ["epoch", "step", "train_loss", "train_acc", *VAL_COLUMNS,
                *([f"ema_{c}" for c in VAL_COLUMNS] if ema else []), "lr", "epoch_seconds", "train_img_s"]

    def epoch_line(self, row: dict[str, Any], *, epochs: int) -> str:
        ema = f"  EMA mAP {100 * row['ema_val_map']:.2f}%" if "ema_val_map" in row else ""
        return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} label acc "
                f"{100 * row['train_acc']:.2f}%  val loss {row['val_loss']:.4f} mAP {100 * row['val_map']:.2f}% "
                f"(micro {100 * row['val_map_micro']:.2f}%) F1 {100 * row['val_f1']:.2f}% subset "
                f"{100 * row['val_subset_acc']:.2f}%{ema}  {row['epoch_seconds']:.0f}s")

    def report(self, logits: torch.Tensor, targets: torch.Tensor, *, paths: Sequence[str], run_dir: Path,
               history: Sequence[dict]) -> None:
        """report.txt/json (per-class AP, F1 and support; the pooled numbers) and curves.png."""
        logits, targets = logits.float().cpu(), targets.float().cpu()
        ap = per_class_ap(logits, targets)
        truth, pred = targets > 0.5, logits.sigmoid() >= THRESHOLD
        f1, support = f1_per_class(pred, truth), truth.sum(0)
        totals = self.metrics(logits, targets)
        names = [safe_name(c) for c in self.classes]
        width = max(len(c) for c in [*names, "class"])
        lines = [f"{'class':<{width}}  {'AP':>7}  {'F1':>7}  {'support':>8}"]
        lines += [f"{c:<{width}}  {a:>7.3f}  {f:>7.3f}  {int(s):>8,}" for c, a, f, s in zip(names, ap, f1, support)]
        lines.append(f"mAP {totals['val_map']:.2%} (micro {totals['val_map_micro']:.2%})   F1 {totals['val_f1']:.2%} "
                     f"at {THRESHOLD}   subset accuracy {totals['val_subset_acc']:.2%}   {len(targets)} images")
        write_text_atomic(run_dir / "report.txt", "\n".join(lines) + "\n")
        per_class = [{"class": c, "ap": None if a != a else float(a), "f1": float(f), "support": int(s)}
                     for c, a, f, s in zip(names, ap, f1, support)]
        write_text_atomic(run_dir / "report.json", json.dumps({**totals, "per_class": per_class}, indent=2) + "\n")
        plot_curves(list(history), run_dir / "curves.png")


class _SmoothedBCE(nn.Module):
    def __init__(self, smoothing: float, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float() * (1 - self.smoothing) + self.smoothing / 2
        return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
