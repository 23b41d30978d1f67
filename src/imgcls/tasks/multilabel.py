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

At the end of a run each class gets its own threshold, the one that maximises its F1 on the val part
(`choose_thresholds`); `calibrate` returns them for best.ckpt (checkpoint.Calibration.thresholds), from where
predict, eval, export, serve and Grad-CAM read them, and the report gives F1 and subset accuracy at them.
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
from imgcls.reports.plots import plot_class_bars
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

    def __init__(self, classes: Sequence[str], *, pos_weight: Sequence[float] | None = None,
                 thresholds: Sequence[float] | None = None) -> None:
        """`pos_weight`: the loss's weight of each class's positives; `thresholds`: the report's per-class
        thresholds (eval: the stored ones; None: chosen on the reported outputs, as at the end of training)."""
        self.classes = list(classes)
        self.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores about the task beside the class names."""
        return {"task": self.name}

    def calibrate(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """best.ckpt's record of the val outputs (checkpoint.Calibration): each class's F1-maximising threshold."""
        probs, truth = logits.float().cpu().sigmoid(), targets.float().cpu() > 0.5
        thresholds = choose_thresholds(probs, truth)
        f1 = f1_per_class(probs >= torch.tensor(thresholds), truth)
        return {"temperature": 1.0, "abstain": {}, "fitted_on": len(targets), "ece_before": None, "ece_after": None,
                "thresholds": thresholds, "threshold_f1": [round(float(f), 6) for f in f1]}

    def calibration_line(self, record: dict[str, Any]) -> str:
        """The log line of `calibrate`'s record."""
        return (f"per-class thresholds (the F1-maximising one of each class on {record['fitted_on']} val photos): "
                + ", ".join(f"{safe_name(c)} {t:.2f} (F1 {f:.2f})"
                            for c, t, f in zip(self.classes, record["thresholds"], record["threshold_f1"])))

    @staticmethod
    def transforms(data: Any, *, train_crop: int, preprocessing: Preprocessing) -> tuple[Any, Any]:
        """Classification's: the same photos, the same augmentations (the target is not spatial)."""
        return Classification.transforms(data, train_crop=train_crop, preprocessing=preprocessing)

    @staticmethod
    def outputs(net: nn.Module, x: torch.Tensor) -> Any:
        return net(x)

    def criterion(self, *, label_smoothing: float = 0.0, pos_weight: Sequence[float] | None = None) -> nn.Module:
        """Binary cross-entropy on the logits; `label_smoothing` eps moves each target towards 1/2 (eps/2 for
        an absent class, 1 - eps/2 for a present one); `pos_weight`: one weight per class for its positives
        (default: the task's)."""
        pos_weight = self.pos_weight if pos_weight is None else pos_weight
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
               history: Sequence[dict], title: str = "") -> dict[str, Any]:
        """report.txt/json (per-class AP, threshold, F1 at it and support; mAP macro and micro, F1 and subset
        accuracy at the thresholds), ap.png (per-class AP and F1) and, with a history, curves.png; returns
        report.json's content."""
        logits, targets = logits.float().cpu(), targets.float().cpu()
        probs, truth = logits.sigmoid(), targets > 0.5
        chosen = self.thresholds is None
        thresholds = choose_thresholds(probs, truth) if chosen else self.thresholds
        ap = per_class_ap(logits, targets)
        pred = probs >= torch.tensor(thresholds)
        f1, support = f1_per_class(pred, truth), truth.sum(0)
        totals = self.metrics(logits, targets)
        names = [safe_name(c) for c in self.classes]
        width = max(len(c) for c in [*names, "class"])
        lines = [title] if title else []
        lines.append(f"{'class':<{width}}  {'AP':>7}  {'thresh':>7}  {'F1':>7}  {'support':>8}")
        lines += [f"{c:<{width}}  {a:>7.3f}  {t:>7.2f}  {f:>7.3f}  {int(n):>8,}"
                  for c, a, t, f, n in zip(names, ap, thresholds, f1, support)]
        where = "chosen on these photos" if chosen else "stored with the model"
        subset = float((pred == truth).all(1).double().mean()) if len(truth) else 0.0
        lines.append(f"mAP {totals['val_map']:.2%} (micro {totals['val_map_micro']:.2%})   F1 {float(f1.mean()):.2%} "
                     f"and subset accuracy {subset:.2%} at the per-class thresholds ({where})   {len(targets)} photos")
        write_text_atomic(run_dir / "report.txt", "\n".join(lines) + "\n")
        per_class = [{"class": c, "ap": None if a != a else float(a), "threshold": float(t), "f1": float(f),
                      "support": int(n)} for c, a, t, f, n in zip(names, ap, thresholds, f1, support)]
        content = {"task": self.name, "map": totals["val_map"], "map_micro": totals["val_map_micro"],
                   "f1": float(f1.mean()), "subset_acc": subset, "thresholds": where, "n": len(targets),
                   "loss": totals["val_loss"], "per_class": per_class}
        write_text_atomic(run_dir / "report.json", json.dumps(content, indent=2) + "\n")
        plot_class_bars({c: 0.0 if a != a else float(a) for c, a in zip(names, ap)}, run_dir / "ap.png",
                        title=f"AP per class (mAP {totals['val_map']:.1%})", marks=[float(f) for f in f1])
        if history:
            plot_curves(list(history), run_dir / "curves.png")
        return content


def choose_thresholds(probs: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Each class's threshold on [N, C] probabilities that maximises its F1 against boolean `truth` (a class is
    predicted present when its probability is >= the threshold): over the cuts between distinct probabilities,
    ranked high first, the one with the best F1 (the higher threshold on a tie), at the midpoint between the
    last probability kept and the next; THRESHOLD for a class without a positive."""
    out = []
    for c in range(probs.shape[1]):
        p, t = probs[:, c].double(), truth[:, c]
        n_pos = int(t.sum())
        if n_pos == 0 or len(p) == 0:
            out.append(THRESHOLD)
            continue
        order = torch.argsort(p, descending=True, stable=True)
        p, hit = p[order], t[order].double()
        tp = hit.cumsum(0)
        k = torch.arange(1, len(p) + 1, dtype=torch.float64)
        f1 = 2 * tp / (k + n_pos)
        cut = torch.ones(len(p), dtype=torch.bool)  # a cut after rank k only where the next probability is lower
        cut[:-1] = p[:-1] > p[1:]
        f1 = torch.where(cut, f1, torch.full_like(f1, -1.0))
        best = int(torch.argmax(f1))  # the first maximum: the fewest photos kept, the higher threshold
        below = float(p[best + 1]) if best + 1 < len(p) else 0.0
        out.append((float(p[best]) + below) / 2)
    return out


class _SmoothedBCE(nn.Module):
    def __init__(self, smoothing: float, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float() * (1 - self.smoothing) + self.smoothing / 2
        return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
