"""`imgcls check`: what is wrong with a dataset before a training run finds out at step 4,000.

Reports per-class counts and imbalance (above IMBALANCED a finding naming the remedies), unreadable
files (broken symbolic links included), images too small to use, byte-identical duplicates: within a
class, across classes (one photo with two labels), and across train/val/test (leakage that inflates
validation accuracy); and a set of one class.

A multi-label CSV (--label-sep) is counted per label (a photo once for each of its labels): the imbalance
finding compares the rarest and the most common label, and the report adds how many labels the photos
have (a histogram and the mean) and the label pairs that occur together most often.

Size: the default transforms upsample anything below their 224 px input, which works for most
photos (976 of flower_photos' 3,670 are below 224 px and train fine), so unless `min_side` is given
only images below SMALLEST_SIDE are flagged: under 32 px (CIFAR's size, and the smallest input the
ResNets take) a file is an icon or a thumbnail rather than a photo of the class.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgcls.data.decode import load_image, read_bytes, stored_size
from imgcls.data.names import findings_lines, safe_name
from imgcls.data.masks import mask_layout
from imgcls.data.parts import open_parts
from imgcls.data.seg_check import MaskCheckReport, check_masks
from imgcls.data.split import counts_table, is_split_index
from imgcls.data.table import CsvColumns, is_table
from imgcls.errors import ConfigError, DataError

SMALLEST_SIDE = 32
IMBALANCED = 3.0  # largest / smallest class above which `imgcls check` says what to do about it
PAIRS = 10  # label pairs a multi-label report lists (most frequent first)


@dataclass
class CheckReport:
    root: str
    classes: list[str]
    counts: dict[str, list[int]]  # part -> images per class
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    too_small: list[tuple[str, int, int]] = field(default_factory=list)  # (path, width, height)
    duplicates: dict[str, list[list[str]]] = field(default_factory=lambda: {
        "within_class": [], "across_classes": [], "across_splits": []})
    problems: list[str] = field(default_factory=list)  # about the set as a whole
    min_side: int = SMALLEST_SIDE  # the shorter side below which an image is flagged
    multilabel: bool = False  # a CSV read with --label-sep: `counts` are photos per label
    labels_per_photo: dict[int, int] = field(default_factory=dict)  # multi-label: number of labels -> photos
    pairs: list[tuple[str, str, int]] = field(default_factory=list)  # multi-label: most frequent co-occurrences

    @property
    def photos(self) -> int:
        return sum(self.labels_per_photo.values()) if self.multilabel else sum(map(sum, self.counts.values()))

    @property
    def mean_labels(self) -> float | None:
        """Multi-label: the mean number of labels per photo (None otherwise)."""
        if not self.multilabel:
            return None
        return sum(k * n for k, n in self.labels_per_photo.items()) / max(1, self.photos)

    @property
    def imbalance(self) -> float:
        totals = [sum(c) for c in zip(*self.counts.values())]
        return max(totals) / max(1, min(totals))

    def imbalance_line(self) -> str | None:
        """The finding of a set whose largest class holds more than IMBALANCED times the smallest's images:
        what a plain run does with it and the remedies, or None."""
        if self.imbalance <= IMBALANCED or not self.classes:
            return None
        totals = [sum(c) for c in zip(*self.counts.values())]
        big, small = totals.index(max(totals)), totals.index(min(totals))
        if self.multilabel:
            return (f"labels are unbalanced: {self.classes[big]} is on {totals[big]:,} photos, {self.classes[small]} "
                    f"on {totals[small]:,} ({self.imbalance:.1f}x); a plain run learns to leave rare labels out: "
                    "train with --pos-weight balanced (or sqrt) and judge runs by mAP (the default metric for "
                    "multi-label)")
        return (f"classes are unbalanced: {self.classes[big]} has {totals[big]:,} images, {self.classes[small]} "
                f"{totals[small]:,} ({self.imbalance:.1f}x); a plain run learns to favour the large classes: train "
                "with --class-weights balanced (or effective) or --sampler balanced, and pick best.ckpt by "
                "--metric balanced_acc or macro_f1")

    @property
    def clean(self) -> bool:
        return not any(self.findings().values())

    def findings(self) -> dict[str, list[str]]:
        """Kind -> one line per finding; file names are already printable (see names.safe_name)."""
        titles = {"within_class": "duplicate within a class", "across_classes": "same image in two classes",
                  "across_splits": "LEAK: same image in two splits"}
        if self.multilabel:
            titles |= {"within_class": "duplicate with the same labels",
                       "across_classes": "same image with different labels"}
        imbalance = self.imbalance_line()
        return {"problem": self.problems, "imbalance": [imbalance] if imbalance else [],
                "unreadable": [f"{path}: {why}" for path, why in self.bad_files],
                f"smaller than {self.min_side}px": [f"{path} ({w}x{h})" for path, w, h in self.too_small],
                **{titles[kind]: [" == ".join(g) for g in groups] for kind, groups in self.duplicates.items()}}

    def to_json(self) -> str:
        extra = {"imbalance": self.imbalance, "clean": self.clean}
        if self.multilabel:
            extra |= {"photos": self.photos, "mean_labels_per_photo": self.mean_labels}
        else:  # the single-label report keeps its keys
            extra |= {k: None for k in ("multilabel", "labels_per_photo", "pairs")}
        out = asdict(self) | extra
        return json.dumps({k: v for k, v in out.items() if v is not None}, indent=2)

    def to_text(self, *, verbose: bool = False) -> str:
        """Counts, then each kind of finding with its count and its first examples (all when verbose)."""
        if self.multilabel:
            lines = [f"{self.root}: {len(self.classes)} labels, {self.photos:,} photos (multi-label; a photo counts "
                     "once for each of its labels)", counts_table(self.classes, self.counts),
                     f"imbalance (most common / rarest label): {self.imbalance:.2f}",
                     "labels per photo: " + ", ".join(f"{k}: {n:,}" for k, n in sorted(self.labels_per_photo.items()))
                     + f" (mean {self.mean_labels:.2f})"]
            if self.pairs:
                lines.append("most frequent pairs: " + ", ".join(f"{a}+{b} {n:,}" for a, b, n in self.pairs))
            return "\n".join(lines + findings_lines(self.findings(), verbose=verbose))
        lines = [f"{self.root}: {len(self.classes)} classes, {sum(map(sum, self.counts.values())):,} images",
                 counts_table(self.classes, self.counts)]
        lines.append(f"imbalance (largest / smallest class): {self.imbalance:.2f}")
        return "\n".join(lines + findings_lines(self.findings(), verbose=verbose))


def _parts(path: Path, csv: CsvColumns | None) -> tuple[list[str], dict[str, list[tuple[Path, Any]]], Path]:
    """(classes, part -> samples, root) for a class folder, a split folder, a split index or a CSV file of
    labels (open_parts)."""
    if path.is_file() and not is_split_index(path) and not is_table(path):
        raise DataError(f"{safe_name(path)}: a file; imgcls check needs a folder (one sub-folder of images per "
                        "class, or a split folder with train/ val/ test/), a split.json index or a CSV file of "
                        "labels")
    found = open_parts(path, csv=csv)
    return found.classes, {p: s for p, s in found.parts.items() if s}, path


def _probe(path: Path, data: bytes) -> tuple[int, int]:
    """Original (w, h) after EXIF rotation, with a full (draft-reduced) decode to catch truncation."""
    load_image(path, min_side=1, data=data)  # raises DataError for anything unreadable
    return stored_size(path, data)


def check_dataset(path: str | Path, *, min_side: int | None = None, csv: CsvColumns | None = None
                  ) -> CheckReport | MaskCheckReport:
    """`min_side`: flag images whose shorter side is below it (default: below SMALLEST_SIDE only); `csv`: how
    a CSV file of labels is read. Segmentation data (data.masks) gets data.seg_check's report instead."""
    if min_side is not None and min_side < 1:
        raise ConfigError(f"--min-side {min_side}: must be at least 1 (pixels); leave it out to flag only "
                          f"images below {SMALLEST_SIDE} px")
    path = Path(path)
    if path.is_dir() and mask_layout(path) is not None:
        return check_masks(path)
    classes, parts, root = _parts(path, csv)
    counts = {}
    multilabel = any(isinstance(t, tuple) for samples in parts.values() for _, t in samples)
    report = CheckReport(safe_name(root), [safe_name(c) for c in classes], counts,
                         min_side=SMALLEST_SIDE if min_side is None else min_side, multilabel=multilabel)
    if multilabel:
        _label_stats(report, [t for samples in parts.values() for _, t in samples])
    if len(classes) < 2:
        report.problems.append(f"one class ({safe_name(classes[0])}): need at least 2 classes to train a "
                               "classifier; put each class's images in its own sub-folder")
    by_hash: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for part, samples in parts.items():
        counts[part] = [0] * len(classes)
        for file, label in samples:
            for c in (label if multilabel else (label,)):
                counts[part][c] += 1
            name = safe_name(file)
            try:
                data = read_bytes(file)  # read once: decoded and hashed from memory
                w, h = _probe(file, data)
            except DataError as e:
                report.bad_files.append((name, str(e).removeprefix(f"{name}: ")))
                continue
            if min(w, h) < report.min_side:
                report.too_small.append((name, w, h))
            by_hash[hashlib.sha256(data).hexdigest()].append((part, label, name))
    for group in by_hash.values():
        if len(group) < 2:
            continue
        names = [f for _, _, f in group]
        if len({p for p, _, _ in group}) > 1:
            report.duplicates["across_splits"].append(names)
        elif len({t for _, t, _ in group}) > 1:
            report.duplicates["across_classes"].append(names)
        else:
            report.duplicates["within_class"].append(names)
    return report


def _label_stats(report: CheckReport, targets: list[tuple[int, ...]]) -> None:
    """A multi-label report's labels per photo (histogram) and its most frequent label pairs."""
    pairs: dict[tuple[int, int], int] = defaultdict(int)
    for t in targets:
        report.labels_per_photo[len(t)] = report.labels_per_photo.get(len(t), 0) + 1
        for i, a in enumerate(t):
            for b in t[i + 1:]:
                pairs[a, b] += 1
    top = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:PAIRS]
    report.pairs = [(report.classes[a], report.classes[b], n) for (a, b), n in top]
