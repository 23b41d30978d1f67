"""Semantic segmentation, the second task on the seam (tasks/base.py): a class for every pixel.

Targets are masks (long [N, H, W]; the data's void value is IGNORE by then, data.seg_transforms), the
loss is cross-entropy with that ignore index on the model's "out" plus `aux_weight` (0.5) times the
same on "aux" where the model has an auxiliary head, optionally with per-class weights (median
frequency). Validation is *streamed*: each batch adds its pixel confusion matrix and loss to one
small tally (`tally`), so no logits are kept (CamVid's val set as float logits would be 770 MB); the
metrics (pixel accuracy, mean class accuracy, mean IoU, which picks best.ckpt) and the report
(per-class table, confusion matrix CSV + PNG, curves) come from the summed tally.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgcls.data import Preprocessing
from imgcls.data.masks import MaskClasses
from imgcls.data.seg_transforms import IGNORE, PairedEval, PairedTrain
from imgcls.models.seg_parts import padded_forward
from imgcls.reports import plot_curves
from imgcls.reports.seg_metrics import pixel_confusion, save_seg_report, seg_metrics

log = logging.getLogger("imgcls")

COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_pixel_acc", "val_mean_acc", "val_miou",
           "lr", "epoch_seconds", "train_img_s")


def median_frequency_weights(counts: np.ndarray, num_classes: int) -> torch.Tensor:
    """SegNet's class balancing: weight_c = median(share) / share_c over the classes' pixel shares in the
    train masks (void left out); a class with no pixel gets 1."""
    pixels = np.asarray(counts[:num_classes], dtype=np.float64)
    share = pixels / max(1.0, pixels.sum())
    present = share > 0
    weights = np.ones(num_classes)
    weights[present] = np.median(share[present]) / share[present]
    return torch.tensor(weights, dtype=torch.float32)


class Segmentation:
    """Every pixel, one class of `classes` (or void, ignored)."""

    name = "segmentation"
    score = "val_miou"
    streamed = True  # validation sums `tally` over batches instead of keeping logits

    def __init__(self, classes: Sequence[str], *, labels: MaskClasses | None = None,
                 class_weights: torch.Tensor | None = None) -> None:
        self.classes = list(classes)
        self.labels = labels
        self.class_weights = class_weights

    @staticmethod
    def transforms(data: Any, *, train_crop: int, preprocessing: Preprocessing) -> tuple[Any, Any]:
        """(train, eval) paired transforms: random scale of the eval size by --seg-scale, pad (void and the
        mean colour), crop `train_crop` square, flip, colour jitter on the photo; eval at the run's resize."""
        train = PairedTrain(preprocessing.resize, train_crop, scale=tuple(data.seg_scale), hflip=data.hflip,
                            fill=tuple(data.mean), color_jitter=data.color_jitter, interpolation=data.interpolation)
        return train, PairedEval(preprocessing.resize, preprocessing.interpolation)

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores about the task beside the class names: void and palette."""
        return {"task": self.name, "labels": self.labels.to_dict() if self.labels is not None else None}

    @staticmethod
    def outputs(net: nn.Module, x: torch.Tensor) -> Any:
        """`net(x)` on whole stride-32 cells: a val photo of 480x360 runs padded to 480x384 and its maps are
        cropped back (models.seg_parts.padded_forward); training crops of a multiple of 32 get a zero-width pad."""
        return padded_forward(net, x)

    def criterion(self, *, label_smoothing: float = 0.0) -> nn.Module:
        return nn.CrossEntropyLoss(weight=self.class_weights, ignore_index=IGNORE, label_smoothing=label_smoothing)

    @staticmethod
    def logits_of(output: Any) -> torch.Tensor:
        return output["out"] if isinstance(output, dict) else output

    def loss(self, output: Any, target: torch.Tensor, criterion: nn.Module, *, aux_weight: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, "out" logits): main + aux_weight x aux (torchvision's recipe: 0.5) where there is an aux."""
        logits = self.logits_of(output)
        loss = criterion(logits, target)
        if isinstance(output, dict) and output.get("aux") is not None:
            loss = loss + aux_weight * criterion(output["aux"], target)
        return loss, logits

    def hits(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        """The batch's pixel accuracy times its images (the engine divides the sum by images): train_acc is
        the pixel accuracy of the epoch, each batch weighted by its images."""
        labelled = target != IGNORE
        n = int(labelled.sum())
        if n == 0:
            return 0.0
        right = int((logits.detach().argmax(1) == target)[labelled].sum())
        return right / n * len(target)

    def tally(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        """One batch's contribution to validation, summed over batches and ranks: the pixel confusion
        matrix (flattened) then the loss summed over labelled pixels and their count (float64)."""
        logits = self.logits_of(output).float()
        target = target.to(logits.device)
        n = len(self.classes)
        cm = pixel_confusion(logits.argmax(1), target, n).double().flatten()
        loss = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        labelled = (target != IGNORE).sum()
        return torch.cat([cm.cpu(), torch.stack([loss.double(), labelled.double()]).cpu()])

    def _confusion(self, tally: torch.Tensor) -> np.ndarray:
        n = len(self.classes)
        return tally[:n * n].reshape(n, n).round().long().numpy()

    def tally_metrics(self, tally: torch.Tensor, *, prefix: str = "") -> dict[str, float]:
        """{prefix}val_loss, val_pixel_acc, val_mean_acc and val_miou of a summed tally."""
        m = seg_metrics(self._confusion(tally))
        loss = float(tally[-2] / tally[-1]) if tally[-1] > 0 else 0.0
        return {f"{prefix}val_loss": loss, f"{prefix}val_pixel_acc": m.pixel_acc, f"{prefix}val_mean_acc": m.mean_acc,
                f"{prefix}val_miou": m.miou}

    def columns(self, *, ema: bool = False) -> list[str]:
        cols = list(COLUMNS)
        if ema:
            at = cols.index("val_miou") + 1
            cols[at:at] = ["ema_val_loss", "ema_val_pixel_acc", "ema_val_mean_acc", "ema_val_miou"]
        return cols

    def epoch_line(self, row: dict[str, Any], *, epochs: int) -> str:
        ema = f"  EMA mIoU {100 * row['ema_val_miou']:.2f}%" if "ema_val_miou" in row else ""
        return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} pixel acc "
                f"{100 * row['train_acc']:.2f}%  val loss {row['val_loss']:.4f} mIoU {100 * row['val_miou']:.2f}% "
                f"pixel acc {100 * row['val_pixel_acc']:.2f}% mean acc {100 * row['val_mean_acc']:.2f}%{ema}"
                f"  {row['epoch_seconds']:.0f}s")

    def tally_report(self, tally: torch.Tensor, *, run_dir: Path, history: Sequence[dict], title: str = "") -> None:
        """report.txt (per-class IoU and accuracy), report.json, confusion_matrix.csv/png and curves.png."""
        m = save_seg_report(self._confusion(tally), self.classes, run_dir, title=title)
        if m.absent:
            log.info("left out of mean IoU (in neither the truth nor the predictions): %s",
                     ", ".join(self.classes[i] for i in m.absent))
        if history:
            plot_curves(list(history), run_dir / "curves.png")
