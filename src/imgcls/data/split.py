"""A stratified, reproducible train/val(/test) split of a class-per-folder dataset.

Per class, the sorted file list is shuffled by a generator seeded from `seed`, then `int(n * val)`
files go to val and `int(n * test)` to test (rounded down per class, as the seeds' split script
does: flower_photos gives 3,306 train / 364 val). The result is written as folders of copies or
symlinks, or as one `split.json` index that the datasets read directly. The source is never touched.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgcls.data.dataset import ImageFolder, scan_folder
from imgcls.errors import DataError

PARTS = ("train", "val", "test")
INDEX_NAME = "split.json"


@dataclass
class Split:
    source: Path
    classes: list[str]
    seed: int
    parts: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each part."""
        out = {}
        for part, samples in self.parts.items():
            per = [0] * len(self.classes)
            for _, t in samples:
                per[t] += 1
            out[part] = per
        return out

    def table(self) -> str:
        return counts_table(self.classes, {p: c for p, c in self.counts().items() if sum(c)})


def counts_table(classes: list[str], counts: dict[str, list[int]]) -> str:
    """Images per class (rows) and part (columns), with a total row."""
    width = max(len(c) for c in classes + ["total"])
    lines = ["class".ljust(width) + "".join(f"{p:>8}" for p in counts)]
    for i, name in enumerate(classes):
        lines.append(name.ljust(width) + "".join(f"{c[i]:>8,}" for c in counts.values()))
    lines.append("total".ljust(width) + "".join(f"{sum(c):>8,}" for c in counts.values()))
    return "\n".join(lines)


def make_split(source: str | Path, *, val: float = 0.1, test: float = 0.0, seed: int = 0) -> Split:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"--val {val} and --test {test} must be fractions in [0, 1) that sum to less than 1")
    source = Path(source).resolve()
    classes, samples = scan_folder(source)
    split = Split(source, classes, seed, {p: [] for p in PARTS})
    for idx, _ in enumerate(classes):
        files = [p for p, t in samples if t == idx]
        rng = np.random.default_rng([seed, idx])  # one stream per class: adding a class moves no other
        order = [files[i] for i in rng.permutation(len(files))]
        n_val, n_test = int(len(files) * val), int(len(files) * test)
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        for part, paths in parts.items():
            split.parts[part] += [(p, idx) for p in sorted(paths)]
    return split


def write_split(split: Split, dest: str | Path, *, mode: str = "copy", force: bool = False) -> Path:
    """Write `dest/<part>/<class>/<file>` (copy or link) or `dest/split.json` (index)."""
    dest = Path(dest).resolve()
    if mode not in ("copy", "link", "index"):
        raise DataError(f"unknown split mode {mode!r}; use copy, link or index")
    if dest == split.source or split.source in dest.parents:
        raise DataError(f"{dest}: the destination is inside the source {split.source}; choose another folder")
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise DataError(f"{dest}: destination is not empty; choose an empty folder or pass --force")
        for name in (*PARTS, INDEX_NAME):  # only what a split writes is removed
            target = dest / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    if mode == "index":
        index = {"source": str(split.source), "classes": split.classes, "seed": split.seed,
                 "parts": {part: [[p.relative_to(split.source).as_posix(), t] for p, t in samples]
                           for part, samples in split.parts.items()}}
        path = dest / INDEX_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, path)
        return path
    for part, samples in split.parts.items():
        if not samples:
            continue
        for name in split.classes:
            (dest / part / name).mkdir(parents=True, exist_ok=True)
        for p, t in samples:
            target = dest / part / split.classes[t] / p.relative_to(split.source / split.classes[t])
            target.parent.mkdir(parents=True, exist_ok=True)
            if mode == "copy":
                shutil.copy2(p, target)
            else:
                target.symlink_to(p)
    return dest


def is_split_index(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix == ".json" or (path / INDEX_NAME).is_file()


def read_split_index(path: str | Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """(classes, part -> samples) of a split index (`split.json`, or a folder that holds one)."""
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME
    try:
        index = json.loads(path.read_text())
        source, classes = Path(index["source"]), index["classes"]
        parts = {part: [(source / rel, int(t)) for rel, t in samples] for part, samples in index["parts"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a split index written by `imgcls split --mode index` ({e})") from None
    return classes, parts


def read_split(path: str | Path, part: str) -> tuple[list[str], list[tuple[Path, int]]]:
    """(classes, samples) of one part of a split index."""
    classes, parts = read_split_index(path)
    if part not in parts:
        raise DataError(f"{path}: has no part {part!r}; it has {sorted(parts)}")
    return classes, parts[part]


def open_dataset(path: str | Path, part: str | None = None, **kwargs) -> ImageFolder:
    """A class-per-folder tree, a part of it (`path/part`), or a part of a split index (split.json)."""
    path = Path(path)
    if is_split_index(path):
        if part is None:
            raise DataError(f"{path}: a split index; say which part to read (train, val or test)")
        classes, samples = read_split(path, part)
        return ImageFolder(path, samples=samples, classes=classes, **kwargs)
    return ImageFolder(path / part if part else path, **kwargs)
