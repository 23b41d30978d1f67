"""`imgcls eval` of a multi-label model (a checkpoint or its exported file) on a CSV of labels read with
--label-sep: each class's average precision, mAP (macro and micro), and F1 and subset accuracy at the
per-class thresholds the model stores (chosen on its val part at the end of training) -> report.txt and
report.json (tasks.multilabel.MultiLabel.report, the report train writes)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imgcls.data import default_workers, open_parts, safe_name
from imgcls.data.table import CsvColumns
from imgcls.errors import ConfigError, DataError
from imgcls.inference.predictor import Predictor
from imgcls.tasks.multilabel import MultiLabel


@dataclass
class MultiLabelReport:
    text: str
    numbers: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    task: str = "multilabel"

    def to_text(self) -> str:
        return self.text.rstrip("\n")


def evaluate_multilabel(predictor: Predictor, name: str, data: str | Path, *, part: str | None, csv: CsvColumns,
                        out: Path, skip_bad: bool, workers: int | None, progress: bool) -> MultiLabelReport:
    """Evaluate multi-label `predictor` (of model `name`) on `part` of CSV `data`; its labels must be among the
    model's classes (a photo's targets are placed at the model's class indices), the report goes to `out`."""
    if csv.label_sep is None:
        raise ConfigError(f"{name} is a multi-label model: evaluate it on a CSV file of labels with --label-sep "
                          "(e.g. --label-sep ';')")
    parts = open_parts(data, only=None if part is None else (part,), csv=csv, known=list(predictor.classes))
    which = part or ("val" if "val" in parts.parts else parts.choose(None))
    parts, skipped = parts.readable(which, skip_bad=skip_bad, workers=default_workers() if workers is None else workers)
    if not parts.parts[which]:
        raise DataError(f"{safe_name(data)}: no readable image to evaluate" + (f" in part {part!r}" if part else ""))
    ds = parts.dataset(which, predictor.transform, min_side=predictor.min_side, resize=predictor.preprocessing.resize)
    logits = predictor.logits_of_dataset(ds, progress=progress)
    index = [predictor.classes.index(c) for c in parts.classes]  # the CSV's classes may be fewer than the model's
    targets = torch.zeros(len(ds.samples), len(predictor.classes))
    for row, (_, labels) in enumerate(ds.samples):
        targets[row, [index[c] for c in labels]] = 1.0
    if predictor.tta:  # the views' averaged probabilities, as logits of the same sigmoid
        logits = torch.logit(predictor.probabilities(logits), eps=1e-7)
    task = MultiLabel(predictor.classes, thresholds=predictor.thresholds)
    out.mkdir(parents=True, exist_ok=True)
    numbers = task.report(logits, targets, paths=[str(p) for p, _ in ds.samples], run_dir=out, history=[],
                          title=f"{name} on {safe_name(data)} ({which})")
    return MultiLabelReport((out / "report.txt").read_text(), numbers, [str(p) for p in skipped])

