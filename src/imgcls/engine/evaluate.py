"""`imgcls eval`: a checkpoint on a labelled folder — top-1/top-5, per-class P/R/F1, confusion
matrix (PNG + CSV) and the most confidently wrong images."""
from __future__ import annotations

from pathlib import Path

import torch

from imgcls.data import open_dataset
from imgcls.engine.build import resolve_device
from imgcls.errors import DataError
from imgcls.inference.predictor import Predictor
from imgcls.reports import ClassificationReport, classification_report


def evaluate(checkpoint: str | Path, data: str | Path, *, part: str | None = None, batch_size: int = 64,
             workers: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
             n_wrong: int = 10, progress: bool = True, draft: bool = True) -> tuple[ClassificationReport, Path]:
    """Evaluate `checkpoint` on `data` (a class-per-folder tree, or `part` of a split) and save the report.

    The data's classes must be the checkpoint's, by name and order; the report goes to `out_dir`
    (default: beside the checkpoint, `eval-<data folder name>/`). `draft=False` decodes JPEGs at full
    size, exactly as torchvision does, instead of letting JPEG draft mode reduce big ones.
    """
    predictor = Predictor.from_checkpoint(checkpoint, device=device, batch_size=batch_size, workers=workers,
                                          draft=draft)
    if part is None and Path(data).is_dir() and (Path(data) / "val").is_dir() and not (Path(data) / "train").is_dir():
        part = "val"
    ds = open_dataset(data, part, transform=predictor.transform, min_side=predictor.min_side)
    if ds.classes != predictor.classes:
        raise DataError(f"{data}: has {len(ds.classes)} classes {ds.classes[:6]}{'...' if len(ds.classes) > 6 else ''}, "
                        f"but {checkpoint} was trained on {len(predictor.classes)}: {predictor.classes[:6]}"
                        f"{'...' if len(predictor.classes) > 6 else ''}; evaluate on a folder with the same class folders")
    logits = predictor.logits_of_dataset(ds, progress=progress)
    targets = torch.tensor(ds.targets)
    report = classification_report(logits, targets, ds.classes, paths=[str(p) for p, _ in ds.samples], n_wrong=n_wrong)
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{Path(data).name or 'data'}"
    report.save(out)
    (out / "report.txt").write_text(report.to_text() + "\n")
    return report, out


__all__ = ["evaluate", "resolve_device"]
