"""Labels in a CSV file (data/table.py) read through data.open_parts, the one entry point."""
import csv

import pytest

from imgcls.data import make_split, open_parts, write_split
from imgcls.data.check import check_dataset
from imgcls.data.parts import WHOLE
from imgcls.data.split import read_split_index
from imgcls.data.table import CsvColumns, read_table
from imgcls.errors import DataError
from tests.conftest import make_tiny_folder


def write_csv(path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


@pytest.fixture
def tree(tmp_path):
    return make_tiny_folder(tmp_path / "tiny", per_class=4)


def _rows(tree, header=("path", "label")):
    """One row per photo of `tree`, relative to it, in reverse order (the CSV's order must not matter)."""
    files = sorted(tree.rglob("*.jpg"), reverse=True)
    return [header, *((p.relative_to(tree).as_posix(), p.parent.name) for p in files)]


def test_a_csv_of_a_tree_is_the_same_dataset_whole_or_split_on_the_fly(tree, tmp_path):
    labels = write_csv(tmp_path / "labels.csv", _rows(tree))
    cols = CsvColumns(images=str(tree))
    whole, table = open_parts(tree), open_parts(labels, csv=cols)
    assert (table.classes, table.parts) == (whole.classes, whole.parts) and list(table.parts) == [WHOLE]
    a, b = open_parts(tree, val_fraction=0.25), open_parts(labels, val_fraction=0.25, csv=cols)
    assert a.parts == b.parts and list(b.parts) == ["train", "val"]
    assert b.description == f"{labels} (images in {tree}), stratified split val=0.25 seed=0"


def test_columns_found_by_name_or_given_a_split_column_and_absolute_paths(tree, tmp_path):
    rows = [["File", "Category", "Split", "note"]]
    for i, p in enumerate(sorted(tree.rglob("*.jpg"))):
        path = str(p) if i % 2 else p.relative_to(tree).as_posix()  # absolute paths too
        rows.append([path, p.parent.name, "VAL" if i % 4 == 0 else "train", "x"])
    labels = write_csv(tree / "labels.csv", rows, delimiter=";")  # --images defaults to the CSV's folder
    parts = open_parts(labels)
    assert list(parts.parts) == ["train", "val"] and len(parts.parts["val"]) == 3 and len(parts.files()) == 12
    assert parts.description == f"{labels} (images in {tree}), split column"
    assert open_parts(labels, only=("val",)).parts["val"] == parts.parts["val"]
    named = [["a", "b", "c"], *((p, c, "z") for p, c in _rows(tree)[1:])]
    given = open_parts(write_csv(tmp_path / "named.csv", named), csv=CsvColumns(str(tree), "A", "b"))
    assert given.parts == open_parts(tree).parts


def test_the_same_row_twice_is_one_sample(tree, tmp_path):
    rows = _rows(tree)
    table = read_table(write_csv(tmp_path / "twice.csv", [*rows, rows[1]]), CsvColumns(images=str(tree)))
    assert len(table.samples) == 12 and table.lines[tree / rows[1][0]] == 2


@pytest.mark.parametrize("edit, says", [
    (lambda rows: rows[3].__setitem__(0, "class_0/gone.jpg"), r"bad.csv line 4: .*class_0/gone.jpg: no such file "
                                                               r"\(relative paths start at --images .*tiny\)"),
    (lambda rows: rows[2].__setitem__(1, " "), r"bad.csv line 3 \(class_2/img_002.jpg\): empty label; give every row"),
    (lambda rows: rows[2].__setitem__(0, ""), r"bad.csv line 3: empty path"),
    (lambda rows: rows.append([rows[1][0], "class_1"]), r"bad.csv line 14: class_2/img_003.jpg is labelled 'class_1' "
                                                        r"here and 'class_2' on line 2; keep one row per image"),
    (lambda rows: rows.__setitem__(0, ["image", "what"]), r"bad.csv: no label column among \['image', 'what'\] "
                                                          r"\(looked for label, class, .*\); name it with --label-col"),
    (lambda rows: rows.__setitem__(0, ["path", "file", "label"]), r"more than one path column"),
    (lambda rows: rows[5].__setitem__(1, "zebra"),
     r"bad.csv line 6: label 'zebra' has this one image only, so it cannot be in both train and val; add images of it "
     r"or remove the row"),
    (lambda rows: rows[1:] and rows.__delitem__(slice(1, None)), r"bad.csv: no rows below the header"),
])
def test_bad_rows_are_one_line_naming_the_row(tree, tmp_path, edit, says):
    rows = [list(r) for r in _rows(tree)]
    edit(rows)
    with pytest.raises(DataError, match=says):
        open_parts(write_csv(tmp_path / "bad.csv", rows), val_fraction=0.25, csv=CsvColumns(images=str(tree)))


def test_bad_split_cells_columns_and_flags(tree, tmp_path):
    rows = [["path", "label", "split"], *([p, c, "train"] for p, c in _rows(tree)[1:])]
    rows[4][2] = "holdout"
    with pytest.raises(DataError, match=r"line 5: split 'holdout' is not train, val or test"):
        open_parts(write_csv(tmp_path / "s.csv", rows), csv=CsvColumns(images=str(tree)))
    rows[4][2] = "val"
    rows.append([rows[4][0], rows[4][1], "train"])
    with pytest.raises(DataError, match=r"line 14: .* is in train here and in val on line 5 \(a leak\)"):
        open_parts(write_csv(tmp_path / "s.csv", rows), csv=CsvColumns(images=str(tree)))
    with pytest.raises(DataError, match=r"--path-col 'where': .*s.csv has no such column; its columns are"):
        open_parts(tmp_path / "s.csv", csv=CsvColumns(str(tree), path_col="where"))
    with pytest.raises(DataError, match=r"--images .*nope: no such folder"):
        open_parts(tmp_path / "s.csv", csv=CsvColumns(str(tmp_path / "nope")))
    with pytest.raises(DataError, match=r"--label-col reads a CSV file of labels, and .*tiny is not one"):
        open_parts(tree, csv=CsvColumns(label_col="x"))


def test_split_and_check_read_a_csv(tree, tmp_path):
    labels = write_csv(tmp_path / "labels.csv", _rows(tree))
    cols = CsvColumns(images=str(tree))
    split = make_split(labels, val=0.25, csv=cols)
    assert split.parts["val"] == open_parts(tree, val_fraction=0.25).parts["val"]
    classes, parts = read_split_index(write_split(split, tmp_path / "idx", mode="index"))
    assert parts["train"] == split.parts["train"]
    copied = write_split(split, tmp_path / "copy")
    assert open_parts(copied).parts["val"][0][0] == copied / "val" / "class_0" / split.parts["val"][0][0].name
    report = check_dataset(labels, csv=cols)
    assert report.counts == {WHOLE: [4, 4, 4]} and report.clean
