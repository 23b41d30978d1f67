"""`imgcls eval`: a checkpoint, weights name or exported .onnx file on a labelled folder — top-1 (and
top-5 with more than 5 classes), per-class P/R/F1, confusion matrix (PNG + CSV) and the most confidently wrong images;
a segmentation checkpoint's per-class IoU table (inference.seg_eval)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imgcls.data import default_workers, open_parts, safe_name
from imgcls.errors import ConfigError, DataError
from imgcls.inference.predictor import Predictor
from imgcls.inference.source import open_source
from imgcls.runtime import resolve_device
from imgcls.reports import ClassificationReport, classification_report


def evaluate(checkpoint: str | Path, data: str | Path, *, part: str | None = None, batch_size: int = 64,
             workers: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
             n_wrong: int = 10, progress: bool = True, draft: bool = False,
             skip_bad: bool = False, threads: int | None = None, cam: int = 0
             ) -> tuple[ClassificationReport | Any, Path]:
    """Evaluate `checkpoint` (a checkpoint, a weights name or an exported .onnx file) on `data` (a
    class-per-folder tree, or `part` of a split) and save the report.

    The data's classes must be the checkpoint's, by name and order; the report goes to `out_dir`
    (default: beside the checkpoint, `eval-<data folder name>/`). JPEGs decode at full size, exactly as
    torchvision's eval does (EXIF orientation applied), up to decode.REDUCE_ABOVE_PIXELS (bigger ones decode
    reduced); `draft=True` lets JPEG draft mode reduce big ones.
    Every image is decoded once before any work (data.DatasetParts.readable): an unreadable one is a
    DataError listing them, or, with `skip_bad`, is left out and named in the report's `skipped`. `cam=K` adds `wrong_cam.png`: the
    Grad-CAM overlays of the K most confidently wrong images (of the class each was mistaken for).
    """
    source = open_source(checkpoint, device=resolve_device(device), threads=threads)
    if source.task == "segmentation":
        if cam or draft:
            raise ConfigError(f"{'--cam' if cam else '--draft'} applies to classifiers; {checkpoint} is a "
                              "segmentation model: drop it")
        from imgcls.inference.seg_eval import evaluate_masks

        return evaluate_masks(source, data, part=part, batch_size=batch_size, workers=workers, device=device,
                              out_dir=out_dir, progress=progress, skip_bad=skip_bad, threads=threads)
    predictor = Predictor.load(source, device=device, batch_size=batch_size, workers=workers, draft=draft,
                               threads=threads)
    if cam and predictor.model is None:
        raise ConfigError(f"--cam needs a PyTorch model and {checkpoint} runs on {predictor.backend}; "
                          "evaluate its checkpoint for the Grad-CAM grid")
    parts = open_parts(data, only=None if part is None else (part,))
    name = parts.choose(part)
    if parts.classes != predictor.classes:
        classes = parts.classes
        raise DataError(f"{data}: has {len(classes)} classes {classes[:6]}{'...' if len(classes) > 6 else ''}, "
                        f"but {checkpoint} was trained on {len(predictor.classes)}: {predictor.classes[:6]}"
                        f"{'...' if len(predictor.classes) > 6 else ''}; evaluate on a folder with the same class folders")
    parts, skipped = parts.readable(name, skip_bad=skip_bad, workers=default_workers() if workers is None else workers)
    if not parts.parts[name]:
        raise DataError(f"{safe_name(data)}: no readable image to evaluate" + (f" in part {part!r}" if part else ""))
    ds = parts.dataset(name, predictor.transform, min_side=predictor.min_side, resize=predictor.preprocessing.resize)
    logits = predictor.logits_of_dataset(ds, progress=progress)
    targets = torch.tensor(ds.targets)
    report = classification_report(logits, targets, ds.classes, paths=[str(p) for p, _ in ds.samples],
                                   n_wrong=max(n_wrong, cam))
    worst, report.most_confident_wrong = report.most_confident_wrong[:cam], report.most_confident_wrong[:n_wrong]
    report.skipped = [str(p) for p in skipped]
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{Path(data).name or 'data'}"
    report.save(out)
    if worst:
        from imgcls.inference.cam import Explainer, mistakes_grid

        mistakes_grid(Explainer(predictor), worst, out / "wrong_cam.png")
    return report, out
