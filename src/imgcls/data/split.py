"""A stratified, reproducible train/val(/test) split of a class-per-folder dataset.

Per class, the sorted file list is shuffled by a generator seeded from `seed`, then `int(n * val)`
files go to val and `int(n * test)` to test (rounded down per class, as the seeds' split script
does: flower_photos gives 3,306 train / 364 val). The result is written as folders of copies or
symlinks, or as one `split.json` index that the datasets read directly. The source is never touched.

The destination may not overlap the source in any way: the same folder, one inside the other, also
through symbolic links. Each split lists what it wrote in `.imgcls-split.json`; `force` removes only
those files (then the folders it made, once empty), so replacing a split never deletes anything else.

Byte-identical files (same SHA-256) are found when asked: a copy in the same class may land in
train and val (a leak that inflates validation accuracy), and one photo in two classes has no true
label (flower_photos has one of each kind: roses/15922772266_1167a06620.jpg is also in tulips).
`duplicates="drop"` keeps the first copy (sorted by path) of a group within one class and drops
every copy of a group that spans classes; the other files of those classes may then change part.

A multi-label CSV (read with --label-sep; targets are tuples of class indices) is stratified by each photo's
rarest label (`rarest_labels`), as training's on-the-fly split is, so both give the same parts for a seed. Its
split is written as DEST/labels.csv (path, labels joined by the separator, split column; the copies or links
under DEST/<part>/), which `imgcls train DEST/labels.csv --label-sep SEP` reads back.
"""
from __future__ import annotations

import contextlib
import csv as csv_module
import hashlib
import io
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from imgcls.data.dataset import scan_folder
from imgcls.data.names import safe_name
from imgcls.data.table import CsvColumns, check_no_single_images, is_table, read_table
from imgcls.errors import ConfigError, DataError
from imgcls.paths import write_text_atomic

PARTS = ("train", "val", "test")
INDEX_NAME = "split.json"
TABLE_NAME = "labels.csv"  # a multi-label split's index
MANIFEST_NAME = ".imgcls-split.json"
DUPLICATES = ("ignore", "report", "drop")

Samples = list[tuple[Path, int]]


@dataclass
class Split:
    source: Path
    classes: list[str]
    seed: int
    parts: dict[str, Samples] = field(default_factory=dict)
    duplicates: list[Samples] = field(default_factory=list)  # byte-identical groups, when looked for
    deduplicated: bool = False  # the groups' extra copies were dropped from `parts`
    label_sep: str | None = None  # a multi-label split: targets are tuples of class indices

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each part (multi-label: a photo counts once for each of its labels)."""
        out = {}
        for part, samples in self.parts.items():
            per = [0] * len(self.classes)
            for _, t in samples:
                for c in (t if isinstance(t, tuple) else (t,)):
                    per[c] += 1
            out[part] = per
        return out

    def table(self) -> str:
        return counts_table(self.classes, {p: c for p, c in self.counts().items() if sum(c)})

    def duplicate_warnings(self, examples: int = 3) -> list[str]:
        """One line per kind of byte-identical group: how many, how many leak, a few examples."""
        part_of = {p: part for part, samples in self.parts.items() for p, _ in samples}
        across = [g for g in self.duplicates if len({t for _, t in g}) > 1]
        within = [g for g in self.duplicates if len({t for _, t in g}) == 1]
        lines = []
        spans = "with two or more label sets" if self.label_sep is not None else "in two or more classes"
        for groups, what, dedup in ((across, f"{spans} (no true label)", "every copy"),
                                    (within, "more than once in one class", "all but the first copy")):
            if not groups:
                continue
            shown = "; ".join(" == ".join(safe_name(p.relative_to(self.source)) for p, _ in g)
                              for g in groups[:examples])
            more = f"; and {len(groups) - examples} more" if len(groups) > examples else ""
            if self.deduplicated:
                lines.append(f"{len(groups)} image(s) stored {what}; dropped {dedup} (--dedup): {shown}{more}")
            else:
                leaks = sum(len({part_of[p] for p, _ in g}) > 1 for g in groups)
                lines.append(f"{len(groups)} image(s) stored {what}, {leaks} of them in two parts (a leak): "
                             f"{shown}{more}; --dedup drops {dedup}")
        return lines


def counts_table(classes: list[str], counts: dict[str, list[int]]) -> str:
    """Images per class (rows) and part (columns), with a total row."""
    names = [safe_name(c) for c in classes]
    width = max(len(c) for c in names + ["total"])
    lines = ["class".ljust(width) + "".join(f"{p:>8}" for p in counts)]
    for i, name in enumerate(names):
        lines.append(name.ljust(width) + "".join(f"{c[i]:>8,}" for c in counts.values()))
    lines.append("total".ljust(width) + "".join(f"{sum(c):>8,}" for c in counts.values()))
    return "\n".join(lines)


def find_duplicates(samples: Samples) -> list[Samples]:
    """Groups of two or more byte-identical files (by SHA-256), in sample order."""
    by_hash: dict[bytes, Samples] = defaultdict(list)
    for path, target in samples:
        try:
            digest = hashlib.sha256(path.read_bytes()).digest()
        except OSError:  # a broken link is nobody's duplicate; check and the bad-file prescan report it
            continue
        by_hash[digest].append((path, target))
    return [g for g in by_hash.values() if len(g) > 1]


def rarest_labels(samples: Samples) -> Samples:
    """Each multi-label sample with its rarest label (fewest photos in `samples`; ties: the lower index), the
    one class a stratified split files it under."""
    counts: dict[int, int] = {}
    for _, t in samples:
        for c in t:
            counts[c] = counts.get(c, 0) + 1
    return [(p, min(t, key=lambda c: (counts[c], c))) for p, t in samples]


def make_split(source: str | Path, *, val: float = 0.1, test: float = 0.0, seed: int = 0,
               duplicates: str = "ignore", labelled: tuple[list[str], Samples] | None = None,
               csv: CsvColumns | None = None) -> Split:
    """`duplicates`: "ignore" (no hashing), "report" (groups in `Split.duplicates`) or "drop" them too.
    `source`: a class-per-folder tree, or a CSV file of labels (data.table, read as `csv` says; a label
    with one image refused); `labelled`: (classes, samples) already read, `source` then the folder their
    paths start at; multi-label samples (tuple targets) are stratified by their rarest label."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"--val {val} and --test {test} must be fractions in [0, 1) that sum to less than 1")
    if duplicates not in DUPLICATES:
        raise ConfigError(f"duplicates={duplicates!r}; use one of {DUPLICATES}")
    label_sep = None
    if labelled is None and is_table(source):
        table = read_table(source, csv)
        check_no_single_images(table)
        source, labelled, label_sep = table.images, (table.classes, table.samples), csv and csv.label_sep
    elif csv is not None and csv.given():
        raise DataError(f"{csv.given()[0]} reads a CSV file of labels, and {source} is not one (a .csv file); "
                        f"drop {csv.given()[0]}")
    source = Path(source).resolve()
    classes, samples = labelled if labelled is not None else scan_folder(source)
    groups = find_duplicates(samples) if duplicates != "ignore" else []
    if duplicates == "drop":
        dropped = {p for g in groups for p, _ in (g if len({t for _, t in g}) > 1 else g[1:])}
        samples = [(p, t) for p, t in samples if p not in dropped]
    multilabel = any(isinstance(t, tuple) for _, t in samples)
    split = Split(source, classes, seed, {p: [] for p in PARTS}, duplicates=groups, deduplicated=duplicates == "drop",
                  label_sep=(label_sep or ";") if multilabel else None)
    targets = dict(samples)
    strata = rarest_labels(samples) if multilabel else samples
    for idx, _ in enumerate(classes):
        files = [p for p, t in strata if t == idx]
        rng = np.random.default_rng([seed, idx])  # one stream per class: adding a class moves no other
        order = [files[i] for i in rng.permutation(len(files))]
        n_val, n_test = int(len(files) * val), int(len(files) * test)
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        for part, paths in parts.items():
            split.parts[part] += [(p, idx) for p in sorted(paths)]
    if multilabel:  # back to each photo's labels, in file order
        split.parts = {part: sorted((p, targets[p]) for p, _ in got) for part, got in split.parts.items()}
    return split


def write_split(split: Split, dest: str | Path, *, mode: str = "copy", force: bool = False) -> Path:
    """Write `dest/<part>/<class>/<file>` (copy or link) or `dest/split.json` (index), and the manifest; a
    multi-label split writes `dest/<part>/<file>` and `dest/labels.csv` (returned), or that CSV alone (index).

    Every check runs before anything is written or removed: the destination must not overlap the
    source, and a non-empty one must hold an earlier split and `force` (only its files are removed).
    """
    if mode not in ("copy", "link", "index"):
        raise DataError(f"unknown split mode {mode!r}; use copy, link or index")
    given, dest = Path(dest), Path(dest).resolve()
    _refuse_overlap(split, given, dest)
    files, dirs = ({}, []) if mode == "index" else _plan(split)
    written = [INDEX_NAME] if mode == "index" else sorted(files)
    if split.label_sep is not None:  # multi-label: the index is a CSV with a split column
        written = sorted([TABLE_NAME, *files])
    old_files, old_dirs = _earlier_split(dest, force)
    _refuse_in_the_way(dest, written, dirs, old_files)
    _remove_earlier(dest, old_files, old_dirs)
    dest.mkdir(parents=True, exist_ok=True)
    manifest = {"source": str(split.source), "mode": mode, "files": written, "dirs": dirs}
    write_text_atomic(dest / MANIFEST_NAME, json.dumps(manifest, indent=1))  # first: an interrupted split is replaceable
    if split.label_sep is not None:
        write_text_atomic(dest / TABLE_NAME, _split_table(split, None if mode == "index" else files))
    if mode == "index" and split.label_sep is not None:
        return dest / TABLE_NAME
    if mode == "index":
        index = {"source": str(split.source), "classes": split.classes, "seed": split.seed,
                 "parts": {part: [[_indexed(p, split.source), t] for p, t in samples]
                           for part, samples in split.parts.items()}}
        write_text_atomic(dest / INDEX_NAME, json.dumps(index, indent=1))
        return dest / INDEX_NAME
    for rel in dirs:  # sorted: a parent before its children
        (dest / rel).mkdir(exist_ok=True)
    for rel, p in files.items():
        if mode == "copy":
            shutil.copy2(p, dest / rel, follow_symlinks=p.exists())  # a broken link is copied as the link it is
        else:
            (dest / rel).symlink_to(p)
    return dest / TABLE_NAME if split.label_sep is not None else dest


def _split_table(split: Split, files: dict[str, Path] | None) -> str:
    """A multi-label split as CSV text: path, labels (joined by the split's separator), split; a path is where
    a copy or link went (relative to the CSV) or, for an index (`files` None), the photo's absolute path."""
    where = {p: rel for rel, p in (files or {}).items()}
    out = io.StringIO()
    writer = csv_module.writer(out, delimiter="\t" if split.label_sep == "," else ",", lineterminator="\n")
    writer.writerow(["path", "labels", "split"])
    for part, samples in split.parts.items():
        for p, t in samples:
            writer.writerow([where.get(p, str(p)), split.label_sep.join(split.classes[c] for c in t), part])
    return out.getvalue()


def _refuse_overlap(split: Split, given: Path, dest: Path) -> None:
    """Refuse a destination that is, holds or lies in the source or the real folder of a linked class."""
    shown = safe_name(given) + (f" (really {safe_name(dest)})" if given.absolute() != dest else "")
    source = split.source.resolve()
    for root in [source, *((source / c).resolve() for c in split.classes)]:
        if dest == root:
            raise DataError(f"{shown}: the destination is the source {safe_name(root)}; choose another folder")
        if root in dest.parents:
            raise DataError(f"{shown}: the destination is inside the source {safe_name(root)}; choose a folder "
                            "outside it")
        if dest in root.parents:
            raise DataError(f"{shown}: the destination holds the source {safe_name(root)}; choose a folder "
                            "outside it")


def _plan(split: Split) -> tuple[dict[str, Path], list[str]]:
    """(file -> its source, folders in creation order) of a copy or link split, relative to the destination."""
    files: dict[str, Path] = {}
    dirs: set[str] = set()
    for part, samples in split.parts.items():
        if not samples:
            continue
        if split.label_sep is None:
            dirs.update(f"{part}/{c}" for c in split.classes)  # every class, so the part reads as the same set
        for p, t in samples:
            rel = (PurePosixPath(part, _member(p, split.source)) if split.label_sep is not None else  # labels.csv
                   PurePosixPath(part, split.classes[t], _member(p, split.source / split.classes[t], split.source)))
            if str(rel) in files:
                raise DataError(f"{safe_name(p)} and {safe_name(files[str(rel)])} would both be {safe_name(rel)}; "
                                "rename one, or write the split with --mode index")
            files[str(rel)] = p
            dirs.update(str(d) for d in list(rel.parents)[:-1])  # all but "."
    return files, sorted(dirs)


def _indexed(path: Path, source: Path) -> str:
    """A file as a split index records it: relative to the source (a CSV's absolute path outside its images
    folder stays absolute; read_split_index joins either to the source)."""
    return path.relative_to(source).as_posix() if path.is_relative_to(source) else str(path)


def _member(path: Path, *roots: Path) -> str:
    """`path` inside a part's class folder: relative to the first root that holds it (the class folder of a
    tree; a CSV's images folder), else its name."""
    for root in roots:
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def _earlier_split(dest: Path, force: bool) -> tuple[set[str], list[str]]:
    """(files, folders) an earlier split wrote in `dest`, which `force` may remove; refuses anything else."""
    if not dest.exists():
        return set(), []
    if not dest.is_dir():
        raise DataError(f"{safe_name(dest)}: not a folder; give a new or empty folder")
    manifest = dest / MANIFEST_NAME
    if not manifest.is_file():
        if any(dest.iterdir()):
            raise DataError(f"{safe_name(dest)}: destination is not empty and holds no earlier imgcls split "
                            f"({MANIFEST_NAME}); choose a new or empty folder (--force only replaces an earlier split)")
        return set(), []
    if not force:
        raise DataError(f"{safe_name(dest)}: holds an earlier split; pass --force to replace it "
                        "(only the files that split wrote are removed)")
    try:
        written = json.loads(manifest.read_text())
        files, dirs = {_relative(f) for f in written["files"]}, [_relative(d) for d in written["dirs"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{safe_name(manifest)}: not a manifest written by imgcls split ({e}); "
                        "empty the folder yourself or choose another") from None
    return files, dirs


def _refuse_in_the_way(dest: Path, files: list[str], dirs: list[str], old_files: set[str]) -> None:
    """Refuse to write over anything but an earlier split's own files: a user's file, a linked folder."""
    for rel in dirs:
        path = dest / rel
        if path.is_symlink() or path.exists() and not path.is_dir():
            raise DataError(f"{safe_name(path)}: is in the way (the split needs a folder there); move it away "
                            "or choose another folder")
    for rel in files:
        path = dest / rel
        replaceable = rel in old_files and (path.is_symlink() or path.is_file())
        if (path.exists() or path.is_symlink()) and not replaceable:
            raise DataError(f"{safe_name(path)}: is in the way (a file imgcls split did not write); move it "
                            "away or choose another folder")


def _relative(rel: str) -> str:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{rel!r} is not a path inside the destination")
    return rel


def _remove_earlier(dest: Path, files: set[str], dirs: list[str]) -> None:
    """Delete the files an earlier split wrote, never through a link out of `dest`, then its empty folders."""
    for rel in files:
        path = dest / rel
        if path.parent.resolve() == path.parent and (path.is_symlink() or path.is_file()):
            path.unlink()
    for rel in sorted(dirs, reverse=True):  # children first
        with contextlib.suppress(OSError):  # not empty (a file of the user's) or not a folder: kept
            (dest / rel).rmdir()


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

