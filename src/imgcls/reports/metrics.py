"""Evaluation numbers: top-k accuracy, the confusion matrix, per-class precision/recall/F1, the most
confident mistakes, and the per-epoch `metrics.csv` that a run appends to (and a resumed run continues).

Conventions are scikit-learn's: rows of the confusion matrix are the true class, columns the predicted
one; a ratio whose denominator is zero (precision of a class never predicted, recall of a class with no
sample) is 0.0, and macro averages are plain means over every class, those included.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from imgcls.data.names import safe_name, skipped_line
from imgcls.errors import ConfigError
from imgcls.paths import write_text_atomic
from imgcls.reports.calibration import ConfidenceReport, plot_reliability
from imgcls.reports.plots import plot_confusion_matrix

EPOCH_COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr",
                 "epoch_seconds", "train_img_s")


def reported_ks(num_classes: int, ks: Iterable[int] = (1, 5)) -> tuple[int, ...]:
    """The top-k accuracies worth reporting for `num_classes` classes: k = 1 always, any other k only
    when k < num_classes (top-5 of 5 classes is 100% whatever the model does)."""
    return tuple(k for k in ks if k == 1 or k < num_classes)


def _labels(x: Tensor | np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0.0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def topk_correct(logits: Tensor, targets: Tensor, ks: Iterable[int] = (1, 5)) -> dict[int, int]:
    """For each k, how many samples have their target among the k highest scores.

    k larger than the number of classes is clipped to it (top-5 of a 3-class problem counts every
    sample). Ties are broken as `torch.topk` breaks them.
    """
    ks = tuple(ks)
    if logits.ndim != 2 or tuple(targets.shape) != tuple(logits.shape[:1]):
        raise ValueError(f"want logits [N, C] and targets [N], got {list(logits.shape)} and {list(targets.shape)}")
    if any(k < 1 for k in ks):
        raise ValueError(f"top-k needs every k >= 1, got {ks}")
    if not ks:
        return {}
    maxk = min(max(ks), logits.shape[1])
    top = logits.detach().topk(maxk, dim=1).indices
    hit = top == targets.detach().to(top.device).view(-1, 1)
    return {k: int(hit[:, :min(k, maxk)].any(dim=1).sum()) for k in ks}


def confusion_matrix(preds: Tensor | np.ndarray | Sequence[int], targets: Tensor | np.ndarray | Sequence[int],
                     num_classes: int) -> np.ndarray:
    """[num_classes, num_classes] int64 counts: row = true class, column = predicted class."""
    p, t = _labels(preds, "preds"), _labels(targets, "targets")
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions for {t.size} targets")
    for name, arr in (("preds", p), ("targets", t)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            bad = arr.min() if arr.min() < 0 else arr.max()
            raise ValueError(f"{name} holds class {bad}, outside [0, {num_classes})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


@dataclass(frozen=True)
class Mistake:
    sample: str | int  # the file path when paths were given, else the index in the evaluated set
    true: str
    pred: str
    prob: float  # probability of the (wrong) predicted class


@dataclass
class ClassificationReport:
    """What `imgcls eval` prints and saves: accuracy, loss, per-class P/R/F1, confusion, worst mistakes.

    Build it with `classification_report`. Ratios are fractions in [0, 1]; a zero denominator gives 0.0.
    Text, JSON and CSV show top-5 only with more than 5 classes (`reported_ks`) and write file and
    class names that are not UTF-8 escaped (`data.safe_name`).
    """
    classes: list[str]
    n: int
    top1_correct: int
    top5_correct: int  # k clipped to the number of classes
    loss: float  # mean cross-entropy
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]  # true samples per class
    confusion: np.ndarray  # [true, predicted] counts
    most_confident_wrong: list[Mistake] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable files left out of `n`
    confidence: ConfidenceReport | None = None  # eval's calibration and abstain numbers (reliability.png)

    @property
    def top1(self) -> float:
        return self.top1_correct / self.n

    @property
    def top5(self) -> float:
        return self.top5_correct / self.n

    @property
    def macro_precision(self) -> float:
        return float(np.mean(self.precision))

    @property
    def macro_recall(self) -> float:
        return float(np.mean(self.recall))

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    @property
    def shows_top5(self) -> bool:
        return 5 in reported_ks(len(self.classes))

    def to_text(self) -> str:
        classes = [safe_name(c) for c in self.classes]
        width = max(len(c) for c in [*classes, "macro avg"])
        lines = [f"{'class':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>8}"]
        for name, p, r, f, s in zip(classes, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{name:<{width}}  {p:>9.3f}  {r:>9.3f}  {f:>9.3f}  {s:>8,}")
        lines.append(f"{'macro avg':<{width}}  {self.macro_precision:>9.3f}  {self.macro_recall:>9.3f}  "
                     f"{self.macro_f1:>9.3f}  {self.n:>8,}")
        top5 = f"top-5 {self.top5:.2%} ({self.top5_correct}/{self.n})   " if self.shows_top5 else ""
        lines.append(f"top-1 {self.top1:.2%} ({self.top1_correct}/{self.n})   {top5}loss {self.loss:.4f}")
        lines.append(f"balanced accuracy {self.macro_recall:.2%} (the mean of the classes' recalls)   "
                     f"macro-F1 {self.macro_f1:.2%}")
        if self.skipped:
            lines.append(skipped_line(self.skipped))
        if self.confidence is not None:
            lines.append(self.confidence.to_text())
        if self.most_confident_wrong:
            lines.append(f"most confident mistakes ({len(self.most_confident_wrong)}):")
            for m in self.most_confident_wrong:
                lines.append(f"  {m.prob:7.2%}  true {safe_name(m.true)}, predicted {safe_name(m.pred)}: "
                             f"{safe_name(str(m.sample))}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain JSON types only; a non-finite loss becomes None."""
        top5 = {"top5": self.top5, "top5_correct": self.top5_correct} if self.shows_top5 else {}
        classes = [safe_name(c) for c in self.classes]
        return {
            "n": self.n, "top1": self.top1, "top1_correct": self.top1_correct, **top5,
            "loss": self.loss if math.isfinite(self.loss) else None, "classes": classes,
            "per_class": [{"class": c, "precision": p, "recall": r, "f1": f, "support": s}
                          for c, p, r, f, s in zip(classes, self.precision, self.recall, self.f1, self.support)],
            "macro": {"precision": self.macro_precision, "recall": self.macro_recall, "f1": self.macro_f1},
            "balanced_accuracy": self.macro_recall,
            "confusion_matrix": self.confusion.tolist(),
            "most_confident_wrong": [{"sample": m.sample if isinstance(m.sample, int) else safe_name(m.sample),
                                      "true": safe_name(m.true), "pred": safe_name(m.pred), "prob": m.prob}
                                     for m in self.most_confident_wrong],
            "skipped": [safe_name(s) for s in self.skipped],
            **({"confidence": self.confidence.to_dict()} if self.confidence is not None else {}),
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write report.txt, report.json, confusion_matrix.csv and confusion_matrix.png (and reliability.png
        with a confidence section) into `out_dir`
        (each written whole, then renamed into place); return it."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        classes = [safe_name(c) for c in self.classes]
        write_text_atomic(out / "report.txt", self.to_text() + "\n")
        write_text_atomic(out / "report.json", json.dumps(self.to_dict(), indent=2) + "\n")
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(["true\\pred", *classes])
        for name, row in zip(classes, self.confusion.tolist()):
            writer.writerow([name, *row])
        write_text_atomic(out / "confusion_matrix.csv", table.getvalue())
        plot_confusion_matrix(self.confusion, classes, out / "confusion_matrix.png")
        if self.confidence is not None:
            plot_reliability(self.confidence, out / "reliability.png")
        return out


def classification_report(logits_or_probs: Tensor, targets: Tensor, classes: list[str], *,
                          paths: list[str] | None = None, n_wrong: int = 10) -> ClassificationReport:
    """Evaluate [N, C] scores against [N] targets.

    Scores are taken as probabilities when every row is non-negative and sums to 1 (within 1e-4),
    as logits otherwise; the loss is the mean cross-entropy either way. `most_confident_wrong` holds
    the `n_wrong` misclassified samples with the highest predicted probability, highest first (ties
    by sample order), named by `paths[i]` when given, else by index.
    """
    x = logits_or_probs.detach().cpu().float()
    t = targets.detach().cpu().long()
    if x.ndim != 2 or x.shape[1] != len(classes):
        raise ValueError(f"want scores [N, {len(classes)}] for {len(classes)} classes, got {list(x.shape)}")
    if tuple(t.shape) != (x.shape[0],):
        raise ValueError(f"want targets [{x.shape[0]}] for {x.shape[0]} samples, got {list(t.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no samples to report on")
    if paths is not None and len(paths) != x.shape[0]:
        raise ValueError(f"{len(paths)} paths for {x.shape[0]} samples")
    n, num_classes = x.shape
    cm = confusion_matrix(x.argmax(1), t, num_classes)  # also checks the targets' range

    is_probs = bool(x.min() >= 0) and torch.allclose(x.sum(1), torch.ones(n), atol=1e-4)
    probs = x if is_probs else x.softmax(1)
    log_probs = x.clamp_min(1e-12).log() if is_probs else x.log_softmax(1)
    loss = float(F.nll_loss(log_probs, t))

    hits = topk_correct(x, t, (1, 5))
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is 0 instead of undefined when TP = 0.
    f1 = _ratio(2 * tp, (support + predicted).astype(np.float64))

    conf, pred = probs.max(1)
    conf, pred, true = conf.numpy(), pred.numpy(), t.numpy()
    wrong = np.flatnonzero(pred != true)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:max(0, n_wrong)]
    mistakes = [Mistake(paths[i] if paths is not None else int(i), classes[true[i]], classes[pred[i]],
                        float(conf[i])) for i in wrong]

    return ClassificationReport(
        classes=list(classes), n=n, top1_correct=hits[1], top5_correct=hits[5], loss=loss,
        precision=_ratio(tp, predicted).tolist(), recall=_ratio(tp, support).tolist(), f1=f1.tolist(),
        support=support.tolist(), confusion=cm, most_confident_wrong=mistakes)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (Tensor, np.generic)):
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".6g")
    return safe_name(str(value))


def _parse(cell: str) -> int | float | str:
    if cell == "":
        return math.nan
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


class MetricsLog:
    """One row per epoch in a CSV file (`metrics.csv`) that pandas, a spreadsheet or `plot_curves` reads.

    The header is written once, with the first row; the parent folder is created. An existing file
    with the same header is continued (a resumed run appends to its own log); one with another header
    is refused rather than mixed. Each row is written and closed at once, so a run that dies keeps every
    finished epoch. Floats are written with 6 significant digits; missing values are empty cells; text
    is UTF-8, names that are not UTF-8 escaped (`data.safe_name`).
    """

    def __init__(self, path: str | Path, columns: Sequence[str] = EPOCH_COLUMNS) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if not self.columns or len(set(self.columns)) != len(self.columns):
            raise ValueError(f"metrics columns must be non-empty and distinct, got {self.columns}")
        header = self._header()
        if header is not None and header != self.columns:
            raise ConfigError(f"{self.path}: its columns {header} differ from this run's {self.columns}; "
                              "write the run to another folder or delete the old metrics file")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _header(self) -> list[str] | None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return None
        with self.path.open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), None)

    def append(self, row: Mapping[str, object]) -> None:
        """Add one row; columns it lacks stay empty, keys that are not columns are an error."""
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise ValueError(f"{self.path}: unknown metrics column(s) {unknown}; the columns are {self.columns}")
        new = self._header() is None
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.columns)
            writer.writerow([_cell(row.get(c)) for c in self.columns])

    def read(self) -> list[dict[str, int | float | str]]:
        """Every row, numbers parsed (integers as int, others as float, empty cells as NaN)."""
        if self._header() is None:
            return []
        with self.path.open(newline="", encoding="utf-8") as f:
            return [{k: _parse(v or "") for k, v in r.items()} for r in csv.DictReader(f)]
