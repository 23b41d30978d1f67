"""`imgcls eval` of a segmentation checkpoint (or its exported .onnx file) on photos with masks (data.masks):
each photo resized as the model's preprocessing says, its class scores brought back to the photo's own size
(bilinear), and one pixel confusion matrix over the part (void ignored) -> report.txt (per-class IoU and
accuracy), report.json, confusion_matrix.csv/png, and worst.png: the photos with the lowest mean IoU of their
own, beside their truth and prediction (inference.seg_worst). Only the running matrix and those few masks
are kept, never the logits of the set."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from imgcls.checkpoint import ModelSource
from imgcls.data import default_workers, make_loader, open_parts, safe_name
from imgcls.data.decode import read_bytes, stored_size
from imgcls.data.seg_transforms import PairedEval, collate_masks
from imgcls.errors import DataError
from imgcls.inference.seg_predict import score_function
from imgcls.inference.seg_worst import WorstImages, worst_grid
from imgcls.progress import track
from imgcls.reports.seg_metrics import SegMetrics, pixel_confusion, save_seg_report, seg_report_text

log = logging.getLogger("imgcls")


@dataclass
class SegEvalReport:
    metrics: SegMetrics
    classes: list[str]
    title: str
    skipped: list[str] = field(default_factory=list)
    task: str = "segmentation"
    worst: list[tuple[str, float, float]] = field(default_factory=list)  # (photo, its mIoU, its pixel acc)

    def to_text(self) -> str:
        text = seg_report_text(self.metrics, self.classes, title=self.title).rstrip("\n")
        if self.worst:
            text += "\nlowest mean IoU: " + ", ".join(f"{safe_name(Path(p).name)} {m:.1%}" for p, m, _ in self.worst[:5])
        return text


def evaluate_masks(source: ModelSource, data: str | Path, *, part: str | None = None, batch_size: int = 8,
                   workers: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
                   progress: bool = True, skip_bad: bool = False, threads: int | None = None,
                   n_worst: int = 8) -> tuple[SegEvalReport, Path]:
    """Evaluate segmentation model `source` on `part` of `data` (default: its val part, else the only one);
    worst.png shows the `n_worst` photos with the lowest mean IoU (none: no worst.png)."""
    parts = open_parts(data, only=None if part is None else (part,))
    if parts.labels is None:
        raise DataError(f"{data}: a class-per-folder set, but {source.name} is a segmentation model; evaluate it on "
                        "photos with masks (images/ + masks/ with classes.json, or the PASCAL VOC layout)")
    if parts.classes != list(source.classes):
        raise DataError(f"{data}: has classes {parts.classes}, but {source.name} was trained on "
                        f"{list(source.classes)}; evaluate on masks of the same classes")
    name = part or ("val" if "val" in parts.parts else parts.choose(None))
    workers = default_workers() if workers is None else workers
    parts, skipped = parts.readable(name, skip_bad=skip_bad, workers=workers)
    pairs = parts.parts[name]
    if not pairs:
        raise DataError(f"{safe_name(data)}: no usable photo with a mask in part {name!r}")
    if threads:
        torch.set_num_threads(threads)
    pre = source.preprocessing
    sizes = {stored_size(p, read_bytes(p)) for p, _ in pairs}
    if len(sizes) > 1 and batch_size > 1:
        log.info("photos of %d sizes: evaluated one at a time", len(sizes))
        batch_size = 1
    ds = parts.dataset(name, PairedEval(pre.resize, pre.interpolation, keep_mask=True))
    scores, dev = score_function(source, device)
    loader = make_loader(ds, batch_size=batch_size, workers=workers, device=dev, collate=collate_masks)
    normalize = pre.normalizer(dev)
    n = len(source.classes)
    cm = torch.zeros(n, n, dtype=torch.long)
    worst = WorstImages(n_worst, n)
    seen = 0
    with torch.no_grad():
        for images, masks in track(loader, total=len(loader), desc=f"evaluating {name}", enabled=progress):
            logits = scores(normalize(images))
            if logits.shape[-2:] != masks.shape[-2:]:  # back to the photo's own size
                logits = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
            preds = logits.argmax(1).cpu()
            cm += pixel_confusion(preds, masks, n)
            for pred, mask in zip(preds, masks):
                worst.add(seen, pairs[seen][0], pred, mask)
                seen += 1
    out_dir = Path(out_dir) if out_dir else Path(source.name).parent / f"eval-{Path(data).name or 'data'}"
    title = f"{safe_name(source.name)} on {safe_name(parts.roots[name])} ({len(pairs)} photos, part {name})"
    kept = worst.worst()
    listed = [(str(s.photo), s.miou, s.pixel_acc) for s in kept]
    metrics = save_seg_report(cm, list(source.classes), out_dir, title=title,
                              extra={"skipped": [str(p) for p in skipped],
                                     "worst": [{"path": p, "miou": m, "pixel_acc": a} for p, m, a in listed]})
    if kept:
        labels = source.labels or {}
        worst_grid(kept, list(source.classes), labels.get("palette") or [], int(labels.get("void", 255)),
                   out_dir / "worst.png")
    return SegEvalReport(metrics, list(source.classes), title, [str(p) for p in skipped], worst=listed), out_dir
