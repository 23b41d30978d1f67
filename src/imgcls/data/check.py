"""`imgcls check`: what is wrong with a dataset before a training run finds out at step 4,000.

Reports per-class counts and imbalance, unreadable files, images smaller than the input size, and
byte-identical duplicates: within a class, across classes (one photo with two labels), and across
train/val/test (leakage that inflates validation accuracy).
"""
from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from imgcls.data.dataset import scan_folder
from imgcls.data.decode import load_image
from imgcls.data.split import PARTS, counts_table, is_split_index, read_split_index
from imgcls.errors import DataError


@dataclass
class CheckReport:
    root: str
    classes: list[str]
    counts: dict[str, list[int]]  # part -> images per class
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    too_small: list[tuple[str, int, int]] = field(default_factory=list)  # (path, width, height)
    duplicates: dict[str, list[list[str]]] = field(default_factory=lambda: {
        "within_class": [], "across_classes": [], "across_splits": []})
    min_side: int = 224

    @property
    def imbalance(self) -> float:
        totals = [sum(c) for c in zip(*self.counts.values())]
        return max(totals) / max(1, min(totals))

    @property
    def clean(self) -> bool:
        return not (self.bad_files or self.too_small or any(self.duplicates.values()))

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"imbalance": self.imbalance, "clean": self.clean}, indent=2)

    def to_text(self) -> str:
        lines = [f"{self.root}: {len(self.classes)} classes, {sum(map(sum, self.counts.values())):,} images",
                 counts_table(self.classes, self.counts)]
        lines.append(f"imbalance (largest / smallest class): {self.imbalance:.2f}")
        for path, why in self.bad_files:
            lines.append(f"unreadable: {path}: {why}")
        for path, w, h in self.too_small:
            lines.append(f"smaller than {self.min_side}px: {path} ({w}x{h})")
        titles = {"within_class": "duplicate within a class", "across_classes": "same image in two classes",
                  "across_splits": "LEAK: same image in two splits"}
        for kind, groups in self.duplicates.items():
            for group in groups:
                lines.append(f"{titles[kind]}: " + " == ".join(group))
        n = len(self.bad_files) + len(self.too_small) + sum(map(len, self.duplicates.values()))
        lines.append("clean" if self.clean else f"{n} finding(s)")
        return "\n".join(lines)


def _parts(path: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]], Path]:
    """(classes, part -> samples, root) for a class folder, a split folder, or a split index."""
    if is_split_index(path):
        classes, parts = read_split_index(path)
        return classes, {p: s for p, s in parts.items() if s}, path
    found = [p for p in PARTS if (path / p).is_dir()]
    if found:
        scans = {p: scan_folder(path / p) for p in found}
        classes = scans[found[0]][0]
        for p, (c, _) in scans.items():
            if c != classes:
                raise DataError(f"{path / p}: classes {c} differ from {path / found[0]}'s {classes}")
        return classes, {p: s for p, (_, s) in scans.items()}, path
    classes, samples = scan_folder(path)
    return classes, {"all": samples}, path


def _probe(path: Path, data: bytes) -> tuple[int, int]:
    """Original (w, h) after EXIF rotation, with a full (draft-reduced) decode to catch truncation."""
    load_image(path, min_side=1, data=data)  # raises DataError for anything unreadable
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return (h, w) if rotated else (w, h)


def check_dataset(path: str | Path, *, min_side: int = 224) -> CheckReport:
    path = Path(path)
    classes, parts, root = _parts(path)
    counts = {}
    report = CheckReport(str(root), classes, counts, min_side=min_side)
    by_hash: dict[str, list[tuple[str, int, Path]]] = defaultdict(list)
    for part, samples in parts.items():
        counts[part] = [0] * len(classes)
        for file, label in samples:
            counts[part][label] += 1
            data = file.read_bytes()  # read once: decoded and hashed from memory
            try:
                w, h = _probe(file, data)
            except DataError as e:
                report.bad_files.append((str(file), str(e).split(": ", 1)[-1]))
                continue
            if min(w, h) < min_side:
                report.too_small.append((str(file), w, h))
            by_hash[hashlib.sha256(data).hexdigest()].append((part, label, file))
    for group in by_hash.values():
        if len(group) < 2:
            continue
        names = [str(f) for _, _, f in group]
        if len({p for p, _, _ in group}) > 1:
            report.duplicates["across_splits"].append(names)
        elif len({t for _, t, _ in group}) > 1:
            report.duplicates["across_classes"].append(names)
        else:
            report.duplicates["within_class"].append(names)
    return report
