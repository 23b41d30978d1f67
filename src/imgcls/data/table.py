"""Labels in a CSV file: one row per image, a path and a label (docs/data.md).

    path,label[,split]
    daisy/1001.jpg,daisy,train
    /abs/photo.jpg,tulips,val

A path is relative to the images folder (`--images DIR`, default: the CSV's own folder) unless absolute.
The columns are found by name, case-insensitively (PATH_NAMES, LABEL_NAMES, SPLIT_NAMES) or given
(`--path-col`, `--label-col`); a split column (train / val / test) makes the parts, else the set is one
whole part, as a class-per-folder tree is. Commas, semicolons or tabs separate the cells (sniffed).

Every row is checked before anything is read, and the first problem is one DataError naming its line:
an empty path or label, a missing file, a path listed twice with two labels (or in two parts), an
unknown split. `read_table` returns classes and samples in the order a class-per-folder tree gives them
(classes sorted, files sorted within a class), so the same photos in either layout are the same dataset.

Several labels per photo (`--label-sep ";"`): a label cell holds any number of labels split by the separator
(`road;sky;car`), the dataset is multi-label (`Table.multilabel`) and each sample's target is the sorted
tuple of its class indices (data.dataset.ImageFolder makes it a multi-hot float vector). A cell with an
empty label (`road;;sky`, a trailing `;`) or a label twice is refused naming its line; `known` (eval against
a model's classes) refuses a label the model does not know.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from imgcls.data.names import safe_name
from imgcls.errors import DataError

PATH_NAMES = ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "img")
LABEL_NAMES = ("label", "class", "category", "class_name", "labels")
SPLIT_NAMES = ("split", "subset", "part")
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
Samples = list[tuple[Path, int]]  # multi-label: (path, tuple of class indices)


@dataclass(frozen=True)
class CsvColumns:
    """How a CSV dataset argument is read: where its relative paths start and which columns to use
    (None: found by name)."""
    images: str | Path | None = None
    path_col: str | None = None
    label_col: str | None = None
    label_sep: str | None = None  # several labels per cell, split by this (a multi-label set)

    def given(self) -> list[str]:
        """The flags set, as the user typed them (for the message when DATA is not a CSV file)."""
        return [flag for flag, value in (("--images", self.images), ("--path-col", self.path_col),
                                         ("--label-col", self.label_col), ("--label-sep", self.label_sep))
                if value is not None]


@dataclass(frozen=True)
class Table:
    """A CSV read: its classes (sorted), every sample, and the parts of its split column (None without one)."""
    path: Path
    images: Path
    classes: list[str]
    samples: Samples
    parts: dict[str, Samples] | None
    lines: dict[Path, int]  # each file's row, for messages
    multilabel: bool = False  # --label-sep: each sample's target is a tuple of class indices

    @property
    def description(self) -> str:
        return f"{self.path} (images in {self.images})"


def is_table(path: str | Path) -> bool:
    """Whether a dataset argument is a CSV file of labels."""
    path = Path(path)
    return path.suffix.lower() in (".csv", ".tsv") and path.is_file()


def read_table(path: str | Path, columns: CsvColumns | None = None, *, known: list[str] | None = None) -> Table:
    """Read and check every row of CSV `path` (see the module's docstring); `known`: the only labels allowed
    (a model's classes), each other one refused naming its line."""
    path, columns = Path(path), columns or CsvColumns()
    sep = columns.label_sep
    if sep is not None and (not sep or sep.isspace() or sep in "\"'"):
        raise DataError(f"--label-sep {sep!r}: give the character between the labels of a cell, e.g. --label-sep ';'")
    images = (Path(columns.images) if columns.images is not None else path.parent).resolve()
    if not images.is_dir():
        raise DataError(f"--images {safe_name(images)}: no such folder; give the folder the paths in "
                        f"{safe_name(path)} are relative to")
    header, rows = _rows(path, sep)
    at_path = _column(path, header, columns.path_col, PATH_NAMES, "path", "--path-col")
    at_label = _column(path, header, columns.label_col, LABEL_NAMES, "label", "--label-col")
    at_split = next((i for i, name in enumerate(header) if name.strip().lower() in SPLIT_NAMES), None)
    seen: dict[Path, tuple[int, str, str | None]] = {}  # file -> (line, label, part)
    labels_of: dict[str, tuple[str, ...]] = {}  # a cell -> its labels
    for line, row in rows:
        cells = row + [""] * (len(header) - len(row))
        file, label = cells[at_path].strip(), cells[at_label].strip()
        where = f"{safe_name(path)} line {line}"
        if not file:
            raise DataError(f"{where}: empty path; give every row the image's path or remove the row")
        if not label:
            raise DataError(f"{where} ({safe_name(file)}): empty label; give every row a label or remove the row")
        if label not in labels_of:
            labels_of[label] = _labels(where, label, sep, known)
        part = _part(where, cells[at_split]) if at_split is not None else None
        image = Path(file) if Path(file).is_absolute() else images / file
        if not (image.exists() or image.is_symlink()):  # a broken link is kept: the bad-file scan names it
            raise DataError(f"{where}: {safe_name(image)}: no such file (relative paths start at --images "
                            f"{safe_name(images)}); fix the path or remove the row")
        if image in seen:
            first, other, other_part = seen[image]
            if set(labels_of[other]) != set(labels_of[label]):
                raise DataError(f"{where}: {safe_name(file)} is labelled {label!r} here and {other!r} on line "
                                f"{first}; keep one row per image")
            if other_part != part:
                raise DataError(f"{where}: {safe_name(file)} is in {part} here and in {other_part} on line {first} "
                                "(a leak); keep one row per image")
            continue  # the same row twice: one sample
        seen[image] = (line, label, part)
    if not seen:
        raise DataError(f"{safe_name(path)}: no rows below the header; one row per image: path,label")
    classes = sorted({c for _, label, _ in seen.values() for c in labels_of[label]})
    index = {c: i for i, c in enumerate(classes)}
    if sep is None:
        samples = sorted(((p, index[label]) for p, (_, label, _) in seen.items()), key=lambda s: (s[1], s[0]))
    else:  # a photo has no one class to order by: file order
        samples = sorted((p, tuple(sorted(index[c] for c in labels_of[label]))) for p, (_, label, _) in seen.items())
    parts = None
    if at_split is not None:
        part_of = {p: part for p, (_, _, part) in seen.items()}
        parts = {name: [s for s in samples if part_of[s[0]] == name] for name in ("train", "val", "test")}
        parts = {name: s for name, s in parts.items() if s}
    return Table(path, images, classes, samples, parts, {p: line for p, (line, _, _) in seen.items()},
                 multilabel=sep is not None)


def check_no_single_images(table: Table) -> None:
    """A label with one image cannot be in both the train and the val part: one line naming its row."""
    counts: dict[int, list[Path]] = {}
    for p, t in table.samples:
        for c in (t if isinstance(t, tuple) else (t,)):
            counts.setdefault(c, []).append(p)
    for t, files in counts.items():
        if len(files) == 1:
            line = table.lines[files[0]]
            raise DataError(f"{safe_name(table.path)} line {line}: label {table.classes[t]!r} has this one image "
                            "only, so it cannot be in both train and val; add images of it or remove the row")


def _labels(where: str, cell: str, sep: str | None, known: list[str] | None) -> tuple[str, ...]:
    """The labels of one label cell: itself, or split at `sep` (each one stripped, none empty nor twice)."""
    labels = tuple(c.strip() for c in cell.split(sep)) if sep is not None else (cell,)
    if "" in labels:
        raise DataError(f"{where}: label cell {cell!r} has an empty label between {sep!r} separators; write the "
                        f"labels as a{sep}b{sep}c")
    twice = sorted({c for c in labels if labels.count(c) > 1})
    if twice:
        raise DataError(f"{where}: label cell {cell!r} names {twice[0]!r} twice; name each label once")
    unknown = [c for c in labels if known is not None and c not in known]
    if unknown:
        shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
        raise DataError(f"{where}: label {unknown[0]!r} is not a class of the model (its classes: {shown}); fix the "
                        "cell or remove the row")
    return labels


def _rows(path: Path, sep: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a CSV file: BOM removed, delimiter sniffed (never the label
    separator `sep`), blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{safe_name(path)}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 "
                        "CSV") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters="".join(d for d in ",;\t" if d != sep))
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise DataError(f"{safe_name(path)} line {reader.line_num}: not CSV ({e})") from None
    if not rows:
        raise DataError(f"{safe_name(path)}: empty; a CSV of labels starts with a header row: path,label")
    return rows[0][1], rows[1:]


def _column(path: Path, header: list[str], given: str | None, names: tuple[str, ...], what: str, flag: str) -> int:
    lowered = [h.strip().lower() for h in header]
    if given is not None:
        if given.strip().lower() not in lowered:
            raise DataError(f"{flag} {given!r}: {safe_name(path)} has no such column; its columns are {header}")
        return lowered.index(given.strip().lower())
    found = [i for i, h in enumerate(lowered) if h in names]
    if len(found) != 1:
        why = "no" if not found else "more than one"
        raise DataError(f"{safe_name(path)}: {why} {what} column among {header} (looked for {', '.join(names)}); "
                        f"name it with {flag}")
    return found[0]


def _part(where: str, cell: str) -> str:
    part = SPLIT_VALUES.get(cell.strip().lower())
    if part is None:
        raise DataError(f"{where}: split {cell.strip()!r} is not train, val or test; fix the cell or remove the "
                        "split column (a split is then made on the fly)")
    return part
