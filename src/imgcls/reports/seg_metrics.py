"""Segmentation metrics, all from one confusion matrix of pixels ([true, predicted] counts; void pixels
never enter it): global pixel accuracy, per-class accuracy and its mean, per-class IoU and mean IoU
(the benchmark score; Long et al. 2015 Section 5 defines the four).

A class with no pixel in the truth has no accuracy; one absent from both the truth and the predictions
has no IoU (0 / 0). Such classes are left out of the means, and `absent` names them, instead of a NaN
mean or a mean pulled down by classes the data never shows.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from imgcls.paths import write_text_atomic


def pixel_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, num_classes] int64 counts of (true, predicted) over the pixels whose target is a class
    (0..num_classes-1): the void value and any padding are left out."""
    keep = (target >= 0) & (target < num_classes)
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class SegMetrics:
    pixel_acc: float
    mean_acc: float
    miou: float
    class_acc: list[float | None]  # None: no pixel of the class in the truth
    iou: list[float | None]  # None: the class is in neither the truth nor the predictions
    absent: list[int]  # classes left out of mean IoU (and of mean accuracy)
    pixels: int  # labelled pixels counted


def seg_metrics(cm: np.ndarray | torch.Tensor) -> SegMetrics:
    """The four numbers of a [true, predicted] pixel confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp, truth, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    union = truth + predicted - tp
    total = cm.sum()
    class_acc = [float(t / n) if n > 0 else None for t, n in zip(tp, truth)]
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union)]
    accs = [a for a in class_acc if a is not None]
    ious = [v for v in iou if v is not None]
    return SegMetrics(pixel_acc=float(tp.sum() / total) if total else 0.0,
                      mean_acc=float(np.mean(accs)) if accs else 0.0, miou=float(np.mean(ious)) if ious else 0.0,
                      class_acc=class_acc, iou=iou, absent=[i for i, v in enumerate(iou) if v is None],
                      pixels=int(total))


def _pct(v: float | None) -> str:
    return "     -" if v is None else f"{100 * v:6.2f}"


def seg_report_text(m: SegMetrics, classes: Sequence[str], *, title: str = "") -> str:
    """The per-class table (IoU, accuracy, share of the truth's pixels) and the summary lines."""
    width = max(12, *(len(c) for c in classes))
    lines = [title] if title else []
    lines += [f"mean IoU {100 * m.miou:.2f}%  pixel accuracy {100 * m.pixel_acc:.2f}%  mean class accuracy "
              f"{100 * m.mean_acc:.2f}%  ({m.pixels:,} labelled pixels; void ignored)", "",
              f"{'class':<{width}}  {'IoU %':>6}  {'acc %':>6}"]
    for name, iou, acc in zip(classes, m.iou, m.class_acc):
        lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}")
    if m.absent:
        lines += ["", "left out of the means (in neither the truth nor the predictions): "
                  + ", ".join(classes[i] for i in m.absent)]
    return "\n".join(lines) + "\n"


def save_seg_report(cm: np.ndarray | torch.Tensor, classes: Sequence[str], out_dir: str | Path, *,
                    title: str = "", extra: dict | None = None) -> SegMetrics:
    """report.txt (the table), report.json, confusion_matrix.csv (pixel counts, rows true) and
    confusion_matrix.png (rows normalised) in `out_dir`."""
    from imgcls.reports.plots import plot_confusion_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(cm, dtype=np.int64)
    m = seg_metrics(cm)
    write_text_atomic(out / "report.txt", seg_report_text(m, classes, title=title))
    write_text_atomic(out / "report.json", json.dumps(
        {"task": "segmentation", "classes": list(classes), **asdict(m), **(extra or {})}, indent=2) + "\n")
    rows = [["true \\ predicted", *classes]] + [[c, *map(int, r)] for c, r in zip(classes, cm)]
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    write_text_atomic(out / "confusion_matrix.csv", buf.getvalue())
    plot_confusion_matrix(cm, list(classes), out / "confusion_matrix.png")
    return m
