"""`imgcls eval`: a checkpoint, weights name or exported .onnx file on a labelled folder — top-1 (and
top-5 with more than 5 classes), per-class P/R/F1, confusion matrix (PNG + CSV) and the most confidently wrong images;
a segmentation model's per-class IoU table and its worst images (inference.seg_eval)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imgcls.checkpoint import Calibration
from imgcls.data import default_workers, open_parts, safe_name
from imgcls.data.table import CsvColumns
from imgcls.errors import ConfigError, DataError
from imgcls.inference.abstain import AbstainRule, parse_abstain
from imgcls.inference.predictor import Predictor
from imgcls.inference.source import open_source
from imgcls.runtime import resolve_device
from imgcls.reports import ClassificationReport, classification_report
from imgcls.reports.calibration import abstain_threshold, confidence_report


def evaluate(checkpoint: str | Path, data: str | Path, *, part: str | None = None, batch_size: int = 64,
             workers: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
             n_wrong: int = 10, progress: bool = True, draft: bool = False,
             skip_bad: bool = False, threads: int | None = None, cam: int = 0, images: str | None = None,
             path_col: str | None = None, label_col: str | None = None, abstain: str | float | None = None,
             tta: str | None = None, label_sep: str | None = None) -> tuple[ClassificationReport | Any, Path]:
    """Evaluate `checkpoint` (a checkpoint, a weights name or an exported .onnx file) on `data` (a
    class-per-folder tree, `part` of a split, or a CSV file of labels read with `images`, `path_col` and
    `label_col`: data.open_parts) and save the report.

    The data's classes must be the checkpoint's, by name and order; the report goes to `out_dir`
    (default: beside the checkpoint, `eval-<data folder name>/`). JPEGs decode at full size, exactly as
    torchvision's eval does (EXIF orientation applied), up to decode.REDUCE_ABOVE_PIXELS (bigger ones decode
    reduced); `draft=True` lets JPEG draft mode reduce big ones.
    Every image is decoded once before any work (data.DatasetParts.readable): an unreadable one is a
    DataError listing them, or, with `skip_bad`, is left out and named in the report's `skipped`. `cam=K` adds `wrong_cam.png`: the
    Grad-CAM overlays of the K most confidently wrong images (of the class each was mistaken for).
    The report's confidence section (reports.calibration): ECE at T = 1 and at the model's temperature,
    reliability.png, accuracy at 90%/95% coverage; with `abstain` (a probability, or "precision:Q": the
    threshold train stored, else the one reaching Q on this data) the coverage and accuracy it gives.
    `tta` ("flip", "crops", "flip,crops"): every number is of the views' averaged probabilities.
    A multi-label model is evaluated on a CSV read with `label_sep` (inference.ml_eval).
    """
    rule = parse_abstain(abstain)
    source = open_source(checkpoint, device=resolve_device(device), threads=threads)
    if source.task == "segmentation":
        if cam or draft or tta or abstain is not None:
            flag = "--cam" if cam else "--draft" if draft else "--tta" if tta else "--abstain"
            raise ConfigError(f"{flag} applies to classifiers; {checkpoint} is a segmentation model: drop it")
        from imgcls.inference.seg_eval import evaluate_masks

        return evaluate_masks(source, data, part=part, batch_size=batch_size, workers=workers, device=device,
                              out_dir=out_dir, progress=progress, skip_bad=skip_bad, threads=threads,
                              n_worst=n_wrong)
    predictor = Predictor.load(source, device=device, batch_size=batch_size, workers=workers, draft=draft,
                               threads=threads, tta=tta)
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{Path(data).name or 'data'}"
    csv = CsvColumns(images, path_col, label_col, label_sep)
    if predictor.multilabel:
        if cam:
            raise ConfigError(f"--cam lists the worst mistakes of a classifier; {checkpoint} is multi-label: "
                              "imgcls cam shows each label it finds")
        from imgcls.inference.ml_eval import evaluate_multilabel

        return evaluate_multilabel(predictor, str(checkpoint), data, part=part, csv=csv, out=out, skip_bad=skip_bad,
                                   workers=workers, progress=progress), out
    if label_sep is not None:
        raise ConfigError(f"--label-sep reads several labels per photo, and {checkpoint} gives one class per photo; "
                          "drop --label-sep")
    if cam and predictor.model is None:
        raise ConfigError(f"--cam needs a PyTorch model and {checkpoint} runs on {predictor.backend}; "
                          "evaluate its checkpoint for the Grad-CAM grid")
    parts = open_parts(data, only=None if part is None else (part,), csv=csv)
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
    scores = predictor.probabilities(logits, 1.0) if predictor.tta else logits  # T = 1, as without TTA
    report = classification_report(scores, targets, ds.classes, paths=[str(p) for p, _ in ds.samples],
                                   n_wrong=max(n_wrong, cam))
    worst, report.most_confident_wrong = report.most_confident_wrong[:cam], report.most_confident_wrong[:n_wrong]
    report.skipped = [str(p) for p in skipped]
    probs = predictor.probabilities(logits)
    threshold, how = abstain_threshold_for(rule, predictor.calibration, probs, targets)
    report.confidence = confidence_report(predictor.probabilities(logits, 1.0), probs, targets, temperature=predictor.temperature,
                                          threshold=threshold, threshold_rule=how,
                                          precisions=(rule.value,) if rule and rule.kind == "precision" else ())
    report.save(out)
    if worst:
        from imgcls.inference.cam import Explainer, mistakes_grid

        mistakes_grid(Explainer(predictor), worst, out / "wrong_cam.png")
    return report, out


def abstain_threshold_for(rule: AbstainRule | None, calibration: Calibration, probs: torch.Tensor,
                          targets: torch.Tensor) -> tuple[float | None, str]:
    """(eval's threshold, how it was chosen): a probability as given; a precision from the val table train
    stored, else found on the evaluated data itself (an optimistic number: say so)."""
    if rule is None:
        return None, ""
    if rule.kind == "probability":
        return rule.value, f"--abstain {rule.text}"
    stored = calibration.abstain.get(f"{rule.value:g}")
    if stored is not None:
        return stored, f"--abstain {rule.text}: the threshold fitted on val"
    found = abstain_threshold(probs, targets, rule.value)
    if found is None:
        return 1.01, f"--abstain {rule.text}: not reached on this data at any threshold, so nothing is answered"
    return found, f"--abstain {rule.text}: found on this data (optimistic)"
