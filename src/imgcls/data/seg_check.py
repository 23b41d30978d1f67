"""`imgcls check` for segmentation data (data.masks): what a training run on masks would refuse, found
first, each finding naming its file: unreadable photos, photos without a mask, masks without a photo,
unreadable masks, masks of another size than their photo, mask values that are neither a class nor
void; and per-class pixel shares (CamVid: Road 32%, Bicyclist 0.3%), where rare classes show."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imgcls.data.dataset import find_bad_images
from imgcls.data.masks import read_mask_parts, scan_masks
from imgcls.data.names import findings_lines, safe_name


@dataclass
class MaskCheckReport:
    root: str
    classes: list[str]
    void: int
    images: dict[str, int]  # part -> photos with a mask
    shares: dict[str, list[float]]  # part -> share of all pixels, per class
    void_share: dict[str, float]  # part -> share of void pixels
    unreadable: list[str] = field(default_factory=list)
    no_mask: list[str] = field(default_factory=list)
    no_photo: list[str] = field(default_factory=list)
    bad_masks: list[str] = field(default_factory=list)  # "mask: why" (unreadable, size, values)

    def findings(self) -> dict[str, list[str]]:
        return {"unreadable photo": self.unreadable, "photo without a mask": self.no_mask,
                "mask without a photo": self.no_photo, "unusable mask": self.bad_masks}

    @property
    def clean(self) -> bool:
        return not any(self.findings().values())

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"task": "segmentation", "clean": self.clean}, indent=2)

    def to_text(self, *, verbose: bool = False) -> str:
        parts = list(self.images)
        lines = [f"{self.root}: segmentation, {len(self.classes)} classes (void {self.void}), "
                 + ", ".join(f"{self.images[p]} {p}" for p in parts) + " photos with masks",
                 "pixel shares (of all pixels):",
                 f"  {'class':<16}" + "".join(f"{p:>9}" for p in parts)]
        for i, name in enumerate(self.classes):
            lines.append(f"  {safe_name(name):<16}" + "".join(f"{100 * self.shares[p][i]:8.1f}%" for p in parts))
        lines.append(f"  {'(void)':<16}" + "".join(f"{100 * self.void_share[p]:8.1f}%" for p in parts)
                     + "  ignored by the loss and the metrics")
        return "\n".join(lines + findings_lines(self.findings(), verbose=verbose))


def check_masks(path: str | Path, *, workers: int = 2) -> MaskCheckReport:
    """Every photo and mask of every part of segmentation set `path` read once."""
    path = Path(path)
    found = read_mask_parts(path)
    classes = found.classes
    n = len(classes.names)
    report = MaskCheckReport(safe_name(path), [safe_name(c) for c in classes.names], classes.void, {}, {}, {})
    for part, pairs in found.parts.items():
        report.images[part] = len(pairs)
        report.no_mask += [safe_name(p) for p in found.missing.get(part, [])]
        report.no_photo += [safe_name(m) for m in found.extra.get(part, [])]
        report.unreadable += [f"{safe_name(p)}: {why}" for p, why in
                              find_bad_images([p for p, _ in pairs], workers=workers)]
        scan = scan_masks(pairs, classes, workers=workers)
        report.bad_masks += [f"{safe_name(m)}: {why}" for m, why in scan.problems]
        total = scan.counts.sum()
        report.shares[part] = [float(c / total) if total else 0.0 for c in scan.counts[:n]]
        report.void_share[part] = float(scan.counts[classes.void] / total) if total else 0.0
    return report
