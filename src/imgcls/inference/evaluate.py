"""`imgcls eval`: a checkpoint, weights name or exported .onnx file on a labelled folder — top-1 (and
top-5 with more than 5 classes), per-class P/R/F1, confusion matrix (PNG + CSV) and the most confidently wrong images."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from imgcls.data import ImageFolder, default_workers, find_bad_images, open_dataset, safe_name
from imgcls.errors import ConfigError, DataError
from imgcls.inference.predictor import Predictor
from imgcls.reports import ClassificationReport, classification_report, skipped_line

log = logging.getLogger(__name__)


def evaluate(checkpoint: str | Path, data: str | Path, *, part: str | None = None, batch_size: int = 64,
             workers: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
             n_wrong: int = 10, progress: bool = True, draft: bool = False,
             skip_bad: bool = False, threads: int | None = None, cam: int = 0
             ) -> tuple[ClassificationReport, Path]:
    """Evaluate `checkpoint` (a checkpoint, a weights name or an exported .onnx file) on `data` (a
    class-per-folder tree, or `part` of a split) and save the report.

    The data's classes must be the checkpoint's, by name and order; the report goes to `out_dir`
    (default: beside the checkpoint, `eval-<data folder name>/`). JPEGs decode at full size, exactly as
    torchvision's eval does (EXIF orientation applied), up to decode.REDUCE_ABOVE_PIXELS (bigger ones decode
    reduced); `draft=True` lets JPEG draft mode reduce big ones.
    Every image is decoded once before any work: an unreadable one is a DataError listing them all,
    or, with `skip_bad`, is left out and named in the report's `skipped`. `cam=K` adds `wrong_cam.png`: the
    Grad-CAM overlays of the K most confidently wrong images (of the class each was mistaken for).
    """
    predictor = Predictor.load(checkpoint, device=device, batch_size=batch_size, workers=workers, draft=draft,
                               threads=threads)
    if cam and predictor.model is None:
        raise ConfigError(f"--cam needs a PyTorch model and {checkpoint} runs on {predictor.backend}; "
                          "evaluate its checkpoint for the Grad-CAM grid")
    if part is None and Path(data).is_dir() and (Path(data) / "val").is_dir() and not (Path(data) / "train").is_dir():
        part = "val"
    ds = open_dataset(data, part, transform=predictor.transform, min_side=predictor.min_side,
                      resize=predictor.preprocessing.resize)
    if ds.classes != predictor.classes:
        raise DataError(f"{data}: has {len(ds.classes)} classes {ds.classes[:6]}{'...' if len(ds.classes) > 6 else ''}, "
                        f"but {checkpoint} was trained on {len(predictor.classes)}: {predictor.classes[:6]}"
                        f"{'...' if len(predictor.classes) > 6 else ''}; evaluate on a folder with the same class folders")
    bad = [str(p) for p, _ in find_bad_images([p for p, _ in ds.samples],
                                               workers=default_workers() if workers is None else workers)]
    if bad and not skip_bad:
        names = ", ".join(safe_name(p) for p in bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise DataError(f"{len(bad)} unreadable image(s) in {safe_name(data)}: {names}; delete or replace them "
                        f"(`imgcls check {safe_name(data)}` says why), or pass --skip-bad")
    if bad:
        log.warning("%s", skipped_line(bad))
        dropped = set(bad)
        ds = ImageFolder(ds.root, ds.transform, min_side=ds.min_side, resize=ds.resize, classes=ds.classes,
                         samples=[(p, t) for p, t in ds.samples if str(p) not in dropped])
    if not ds.samples:
        raise DataError(f"{safe_name(data)}: no readable image to evaluate" + (f" in part {part!r}" if part else ""))
    logits = predictor.logits_of_dataset(ds, progress=progress)
    targets = torch.tensor(ds.targets)
    report = classification_report(logits, targets, ds.classes, paths=[str(p) for p, _ in ds.samples],
                                   n_wrong=max(n_wrong, cam))
    worst, report.most_confident_wrong = report.most_confident_wrong[:cam], report.most_confident_wrong[:n_wrong]
    report.skipped = bad
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{Path(data).name or 'data'}"
    report.save(out)
    if worst:
        from imgcls.inference.cam import Explainer, mistakes_grid

        mistakes_grid(Explainer(predictor), worst, out / "wrong_cam.png")
    return report, out
