"""`imgcls eval` of a segmentation checkpoint on photos with masks (data.masks): each photo resized as the
checkpoint's preprocessing says, its class scores brought back to the photo's own size (bilinear), and
one pixel confusion matrix over the part (void ignored) -> report.txt (per-class IoU and accuracy),
report.json, confusion_matrix.csv/png. Only the running matrix is kept, never the logits of the set."""
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
from imgcls.errors import ConfigError, DataError
from imgcls.progress import track
from imgcls.reports.seg_metrics import SegMetrics, pixel_confusion, save_seg_report, seg_report_text
from imgcls.runtime import resolve_device

log = logging.getLogger("imgcls")


@dataclass
class SegEvalReport:
    metrics: SegMetrics
    classes: list[str]
    title: str
    skipped: list[str] = field(default_factory=list)
    task: str = "segmentation"

    def to_text(self) -> str:
        return seg_report_text(self.metrics, self.classes, title=self.title).rstrip("\n")


def evaluate_masks(source: ModelSource, data: str | Path, *, part: str | None = None, batch_size: int = 8,
                   workers: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
                   progress: bool = True, skip_bad: bool = False, threads: int | None = None
                   ) -> tuple[SegEvalReport, Path]:
    """Evaluate segmentation model `source` on `part` of `data` (default: its val part, else the only one)."""
    if source.network is None:
        raise ConfigError(f"{source.name}: evaluating a segmentation model needs its checkpoint (an exported file "
                          "is not evaluated on masks yet)")
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
    dev = resolve_device(device)
    loader = make_loader(ds, batch_size=batch_size, workers=workers, device=dev, collate=collate_masks)
    net, normalize = source.network.to(dev).eval(), pre.normalizer(dev)
    n = len(source.classes)
    cm = torch.zeros(n, n, dtype=torch.long)
    with torch.no_grad():
        for images, masks in track(loader, total=len(loader), desc=f"evaluating {name}", enabled=progress):
            out = net(normalize(images))
            logits = out["out"] if isinstance(out, dict) else out
            if logits.shape[-2:] != masks.shape[-2:]:  # back to the photo's own size
                logits = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
            cm += pixel_confusion(logits.argmax(1).cpu(), masks, n)
    out_dir = Path(out_dir) if out_dir else Path(source.name).parent / f"eval-{Path(data).name or 'data'}"
    title = f"{safe_name(source.name)} on {safe_name(parts.roots[name])} ({len(pairs)} photos, part {name})"
    metrics = save_seg_report(cm, list(source.classes), out_dir, title=title,
                              extra={"skipped": [str(p) for p in skipped]})
    return SegEvalReport(metrics, list(source.classes), title, [str(p) for p in skipped]), out_dir
