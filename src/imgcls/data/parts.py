"""One reading of a dataset argument: what `imgcls train DATA [--val-data V]`, `eval`, `check` and
`export --calib/--val` accept, read the same way by open_parts.

DATA is one of
- a split index: `split.json` (`imgcls split --mode index`), or a folder that holds one: its parts;
- a split folder: whichever of DATA/train, DATA/val, DATA/test exist, each a class-per-folder tree;
- a class-per-folder tree: one part, "all"; with `val_fraction` (train), split on the fly into "train"
  and "val" exactly as `imgcls split --val F --seed S` splits it;
- a CSV file of labels (data.table; `csv`: --images, --path-col, --label-col): the parts of its split
  column, or without one read as a class-per-folder tree is (one part, or split on the fly; a label
  with one image is then refused). The same photos in either layout give the same DatasetParts.
  With --label-sep a cell holds several labels: a multi-label set (`multilabel`, task "multilabel"),
  each sample's target the tuple of its class indices, split on the fly by each photo's rarest label.
- segmentation data (data.masks: a masks/ folder beside images/, or the PASCAL VOC layout): each part's
  samples are (photo, mask) pairs and `labels` holds the classes' void value and palette; the task is
  recognised from this layout.
`val_data` (train's --val-data) is the "val" part, read as a command that reads one part reads DATA
(DatasetParts.choose). Every part has the same classes. Nothing is decoded here: the one
unreadable-image policy is DatasetParts.readable, and a part becomes a dataset once (DatasetParts.dataset).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgcls.data.dataset import ImageFolder, find_bad_images, list_images, scan_folder
from imgcls.data.masks import CLASS_FILE, MaskClasses, mask_layout, read_mask_parts, scan_masks
from imgcls.data.names import safe_name, skipped_line
from imgcls.data.split import PARTS, Samples, Split, is_split_index, make_split, read_split_index
from imgcls.data.table import CsvColumns, Table, check_no_single_images, is_table, read_table
from imgcls.errors import DataError

log = logging.getLogger(__name__)

WHOLE = "all"  # the one part of a class-per-folder tree read whole (`imgcls check` counts it so)
UNLABELLED = -1  # the class index of a photo read with labels=False
LISTED = 5  # unreadable files an error line names; `imgcls check` lists them all


@dataclass(frozen=True)
class DatasetParts:
    """What a dataset argument holds: part name -> samples (file, class index) in the order train, val,
    test; the class names; the folder or index each part was read from (for messages); and how the
    parts were found (the run log's words: "split index x.json", "flowers/train and flowers/val")."""
    path: Path
    classes: list[str]
    parts: dict[str, Samples]
    roots: dict[str, Path]
    description: str
    split: Split | None = None  # the split made on the fly, when there was one
    labels: MaskClasses | None = None  # segmentation data: void and palette (samples are (photo, mask))
    missing_masks: dict[str, list[Path]] | None = None  # segmentation: part -> photos without a mask
    pixel_counts: dict[str, Any] | None = None  # segmentation, after readable(): part -> pixels per value
    multilabel: bool = False  # a CSV with --label-sep: targets are tuples of class indices

    @property
    def task(self) -> str:
        """What the data trains: "segmentation" (photos with masks), "multilabel" or "classification"."""
        return "segmentation" if self.labels is not None else "multilabel" if self.multilabel else "classification"

    def files(self, *names: str) -> list[Path]:
        """The files of parts `names` (default: every part), in order."""
        return [p for name in names or self.parts for p, _ in self.parts[name]]

    def choose(self, part: str | None) -> str:
        """The part read by a command that reads one (eval, --val-data): `part` when given; else a tree's
        whole, or the val part of a split without a train part; else a DataError asking which."""
        if part is not None:
            if part not in self.parts:
                raise _no_part(self.path, part, list(self.parts))
            return part
        if WHOLE in self.parts:
            return WHOLE
        if "val" in self.parts and "train" not in self.parts:
            return "val"
        kind = "a split index" if is_split_index(self.path) else "a split folder"
        raise DataError(f"{self.path}: {kind}; say which part to read (train, val or test)")

    def readable(self, *names: str, skip_bad: bool, workers: int = 2) -> tuple[DatasetParts, list[Path]]:
        """The one unreadable-image policy of the commands that read labelled data (train, eval): every file
        of parts `names` is decoded before any work, part after part; the first part with unreadable files
        stops the command with one line naming them and why, or with `skip_bad` they are left out and one
        warning line names them. Returns the parts without them, and the files left out."""
        kept, skipped = dict(self.parts), []
        counts = {}
        for name in names:
            bad = find_bad_images(self.files(name), workers=workers)
            if self.labels is not None:
                bad += self._bad_masks(name, counts, workers)
            if bad and not skip_bad:
                raise DataError(_unreadable_line(bad, self.roots[name]))
            dropped = {p for p, _ in bad}
            kept[name] = [(p, t) for p, t in kept[name] if p not in dropped]
            skipped += [p for p, _ in bad]
        if skipped:
            log.warning("%s", skipped_line(skipped))
        return replace(self, parts=kept, pixel_counts=counts or None), skipped

    def _bad_masks(self, name: str, counts: dict[str, Any], workers: int) -> list[tuple[Path, str]]:
        """Segmentation: (photo, why) for photos without a mask, and for masks that cannot be used (unreadable,
        another size than the photo, values neither a class nor void); the pixel counts of the part."""
        bad = [(p, "no mask") for p in self.missing_masks.get(name, [])]
        scan = scan_masks(self.parts[name], self.labels, workers=workers)
        photo_of = {m: p for p, m in self.parts[name]}
        counts[name] = scan.counts
        return bad + [(photo_of[m], f"mask {safe_name(m.name)}: {why}") for m, why in scan.problems]

    def dataset(self, name: str, transform: Any = None, **kwargs: Any) -> Any:
        """Part `name` as an ImageFolder (kwargs: ImageFolder's), built from the files listed already; for
        segmentation data a data.seg_transforms.MaskDataset (a paired transform, no kwargs)."""
        if self.labels is not None:
            from imgcls.data.seg_transforms import MaskDataset

            return MaskDataset(self.roots[name], transform, samples=self.parts[name], classes=self.labels)
        return ImageFolder(self.roots[name], transform, samples=self.parts[name], classes=self.classes,
                           multi_hot=self.multilabel, **kwargs)


def open_parts(path: str | Path, *, only: Sequence[str] | None = None, val_data: str | Path | None = None,
               val_fraction: float | None = None, split_seed: int = 0, labels: bool = True,
               csv: CsvColumns | None = None, known: list[str] | None = None) -> DatasetParts:
    """The parts of dataset argument `path` (see the module's docstring). `only`: the parts wanted, each one
    a DataError when missing (default: every part there is; other parts of a split folder are not listed).
    `labels=False` reads photos only (export's calibration and check photos): a folder, or each part
    folder, is every image below it (list_images, class index UNLABELLED), class folders not required;
    a segmentation set's parts are its photos (`files`), never its masks.
    `csv`: how a CSV `path` (and `val_data`) is read; a DataError when given for anything else; `known`: the
    only labels a multi-label CSV may name (eval: the model's classes)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder; give a class-per-folder set, a split folder or split.json, or "
                        "a CSV file of labels")
    assert labels or (val_data is None and val_fraction is None), "val_data and val_fraction read labels"
    layout = mask_layout(path)
    if layout is not None and (labels or layout == "voc" or (path / CLASS_FILE).is_file()):
        return _open_mask_parts(path, only=only, val_data=val_data)  # labels or not: masks are not photos
    if layout == "folders" and (path / "images").is_dir():  # photos only, of one part without classes.json
        path = path / "images"
    table = read_table(path, csv, known=known if csv and csv.label_sep else None) if labels and is_table(path) else None
    if table is None and csv is not None and csv.given():
        raise DataError(f"{csv.given()[0]} reads a CSV file of labels, and {path} is not one (a .csv file); "
                        f"drop {csv.given()[0]}")

    def wanted(name: str) -> bool:  # val_data replaces DATA's val part: that one is not read
        return (only is None or name in only) and not (val_data is not None and name == "val")

    def whole() -> tuple[list[str], Samples, Path]:
        return (table.classes, table.samples, path) if table is not None else _read_folder(path, labels)

    scans: dict[str, tuple[list[str], Samples, Path]]  # part -> (its classes, its samples, where it was read)
    split: Split | None = None
    described: str | None = None  # None: the parts' roots, joined
    if table is not None and table.parts is not None:
        if "train" in table.parts and wanted("train"):
            check_no_single_images(table)
        scans = {name: (table.classes, samples, path) for name, samples in table.parts.items() if wanted(name)}
        described = f"{table.description}, split column"
    elif is_split_index(path):
        classes, found = read_split_index(path)
        scans = {name: (classes, samples, path) for name, samples in found.items() if wanted(name)}
        described = f"split index {path}"
    elif table is None and (folders := [name for name in PARTS if (path / name).is_dir()]):
        scans = {name: _read_folder(path / name, labels) for name in folders if wanted(name)}
    elif val_data is not None:
        scans = {"train": whole()}
    elif val_fraction is not None:
        split = _split_on_the_fly(path, table, val_fraction, split_seed)
        scans = {name: (split.classes, split.parts[name], path) for name in ("train", "val") if wanted(name)}
        described = f"{table.description if table else path}, stratified split val={val_fraction} seed={split_seed}"
    else:
        scans = {WHOLE: whole()}
        described = table.description if table is not None else None
    if val_data is not None and (only is None or "val" in only):
        val_parts = open_parts(val_data, labels=labels, csv=csv if is_table(val_data) else None, known=known)
        name = val_parts.choose(None)
        scans["val"] = (val_parts.classes, val_parts.parts[name], val_parts.roots[name])
        described = described and f"{described} and {val_data}"
    for name in only or ():
        if name not in scans:
            raise _no_part(path, name, list(scans))
    roots = {name: root for name, (_, _, root) in scans.items()}
    classes, _, first = next(iter(scans.values()), ([], [], path))
    for other, _, root in scans.values():
        if other != classes:
            raise DataError(f"{root}: classes {other} differ from {first}'s {classes}; use the same class folders")
    return DatasetParts(path, list(classes), {name: samples for name, (_, samples, _) in scans.items()}, roots,
                        described or " and ".join(str(root) for root in roots.values()), split,
                        multilabel=table is not None and table.multilabel)


def _split_on_the_fly(path: Path, table: Table | None, val_fraction: float, seed: int) -> Split:
    """`imgcls split`'s stratified split of a tree or of a CSV's rows (a label with one image refused)."""
    if table is not None:
        check_no_single_images(table)
    split = make_split(table.images if table else path, val=val_fraction, seed=seed,  # multi-label: by rarest label
                       labelled=(table.classes, table.samples) if table else None)
    if not split.parts["val"]:
        raise DataError(f"{path}: --val-fraction {val_fraction} leaves no validation images")
    return split


def _open_mask_parts(path: Path, *, only: Sequence[str] | None, val_data: str | Path | None) -> DatasetParts:
    """open_parts for segmentation data (data.masks): parts of (photo, mask) pairs; --val-data's val part
    must be segmentation data with the same classes."""
    wanted = None if only is None else [p for p in only if val_data is None or p != "val"]
    found = read_mask_parts(path, wanted=wanted)
    parts, roots, missing = dict(found.parts), dict(found.roots), dict(found.missing)
    description = found.description
    if val_data is not None and (only is None or "val" in only):
        other = open_parts(val_data)
        if other.labels is None or other.classes != list(found.classes.names):
            raise DataError(f"{val_data}: --val-data must be segmentation data with the classes of {path} "
                            f"({', '.join(found.classes.names)})")
        name = "val" if "val" in other.parts else other.choose(None)
        parts["val"], roots["val"] = other.parts[name], other.roots[name]
        missing["val"] = (other.missing_masks or {}).get(name, [])
        description = f"{description} and {val_data}"
    for name in only or ():
        if name not in parts:
            raise _no_part(path, name, list(parts))
    return DatasetParts(path, list(found.classes.names), parts, roots, description, labels=found.classes,
                        missing_masks=missing)


def _read_folder(folder: Path, labels: bool) -> tuple[list[str], Samples, Path]:
    """(classes, samples, folder) of a class-per-folder tree, or with labels=False of every photo in it."""
    if labels:
        return (*scan_folder(folder), folder)
    return [], [(p, UNLABELLED) for p in list_images(folder)], folder


def _no_part(path: Path, part: str, found: list[str]) -> DataError:
    if found == [WHOLE]:
        return DataError(f"{path}: has no part {part!r}: it is one class-per-folder set, not a split (train/ "
                         "val/ test/ folders or a split.json index)")
    return DataError(f"{path}: has no part {part!r}; it has {sorted(found)}")


def _unreadable_line(bad: list[tuple[Path, str]], where: Path) -> str:
    listing = "; ".join(f"{safe_name(p)} ({why})" for p, why in bad[:LISTED])
    more = (f"; and {len(bad) - LISTED} more (imgcls check {safe_name(where)} lists them all)"
            if len(bad) > LISTED else "")
    return (f"{len(bad)} unreadable image(s) in {safe_name(where)}: {listing}{more} — delete or replace them, "
            "or pass --skip-bad")


def open_dataset(path: str | Path, part: str | None = None, *, csv: CsvColumns | None = None,
                 **kwargs: Any) -> ImageFolder:
    """One part of a dataset argument as an ImageFolder (kwargs: ImageFolder's): `part` of a split folder or
    index, or a class-per-folder tree (DatasetParts.choose); `csv`: how a CSV file of labels is read."""
    parts = open_parts(path, only=None if part is None else (part,), csv=csv)
    return parts.dataset(parts.choose(part), **kwargs)


def read_split(path: str | Path, part: str) -> tuple[list[str], Samples]:
    """(classes, samples) of one part of a split index or split folder."""
    parts = open_parts(path, only=(part,))
    return parts.classes, parts.parts[part]
