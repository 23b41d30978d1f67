"""Several labels per photo in a CSV file (data/table.py with --label-sep), read through data.open_parts."""
import csv

import pytest
import torch

from imgcls.data import open_parts
from imgcls.data.table import CsvColumns, read_table
from imgcls.errors import DataError
from tests.multilabel_data import make_multilabel_csv


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
def photos(tmp_path):
    """A folder of 8 photos a..h.png (the CSVs of the tests list them)."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in "abcdefgh":
        Image.new("RGB", (40, 32), (10, 20, 30)).save(folder / f"{name}.png")
    return folder


def rows_of(cells):
    return [["path", "labels"], *([f"{n}.png", cell] for n, cell in zip("abcdefgh", cells))]


def test_a_cell_of_several_labels_is_a_multi_hot_target(photos, tmp_path):
    cells = ["road;sky", "sky", "road; car ;sky", "car", "road", "sky;car", "road", "car;road"]
    path = write_csv(tmp_path / "labels.csv", rows_of(cells))
    table = read_table(path, CsvColumns(images=str(photos), label_sep=";"))
    assert table.multilabel and table.classes == ["car", "road", "sky"]
    assert dict((p.name, t) for p, t in table.samples) == {
        "a.png": (1, 2), "b.png": (2,), "c.png": (0, 1, 2), "d.png": (0,), "e.png": (1,), "f.png": (0, 2),
        "g.png": (1,), "h.png": (0, 1)}
    parts = open_parts(path, csv=CsvColumns(images=str(photos), label_sep=";"))
    assert parts.task == "multilabel"
    ds = parts.dataset("all")
    image, target = ds[2]
    assert target.dtype == torch.float32 and target.tolist() == [1.0, 1.0, 1.0] and ds[1][1].tolist() == [0, 0, 1]
    # without --label-sep the same cells are one label each, as before
    assert read_table(path, CsvColumns(images=str(photos))).classes[0] == "car"


def test_the_delimiter_is_never_the_label_separator(photos, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("path,labels\n" + "".join(f"{n}.png,road;sky;car\n" for n in "abcdefgh"))
    table = read_table(path, CsvColumns(images=str(photos), label_sep=";"))
    assert table.classes == ["car", "road", "sky"]


@pytest.mark.parametrize("cell, says", [
    ("road;;sky", "labels.csv line 4: label cell 'road;;sky' has an empty label between ';' separators; write the "
                  "labels as a;b;c"),
    ("road;", "labels.csv line 4: label cell 'road;' has an empty label between ';' separators; write the labels "
               "as a;b;c"),
    ("sky;road;sky", "labels.csv line 4: label cell 'sky;road;sky' names 'sky' twice; name each label once"),
    ("", "labels.csv line 4 (c.png): empty label; give every row a label or remove the row"),
])
def test_a_bad_cell_is_one_line_naming_its_row(photos, tmp_path, cell, says):
    cells = ["road;sky", "sky;road", cell, "road", "sky", "road", "sky", "road;sky"]
    path = write_csv(tmp_path / "labels.csv", rows_of(cells))
    with pytest.raises(DataError) as e:
        read_table(path, CsvColumns(images=str(photos), label_sep=";"))
    assert str(e.value).endswith(says) and "\n" not in str(e.value)


def test_unknown_labels_a_label_seen_once_and_a_bad_separator_are_refused(photos, tmp_path):
    cells = ["road;sky", "sky;road", "road;tram", "road", "sky", "road", "sky", "road;sky"]
    path = write_csv(tmp_path / "labels.csv", rows_of(cells))
    cols = CsvColumns(images=str(photos), label_sep=";")
    with pytest.raises(DataError, match="labels.csv line 4: label 'tram' is not a class of the model \\(its classes: "
                                        "road, sky\\); fix the cell or remove the row"):
        open_parts(path, csv=cols, known=["road", "sky"])
    with pytest.raises(DataError, match="labels.csv line 4: label 'tram' has this one image only"):
        open_parts(path, csv=cols, val_fraction=0.25)
    with pytest.raises(DataError, match="--label-sep ' ': give the character between the labels"):
        read_table(path, CsvColumns(images=str(photos), label_sep=" "))
    with pytest.raises(DataError, match="--label-sep reads a CSV file of labels"):
        open_parts(photos, csv=CsvColumns(label_sep=";"))


def test_a_split_on_the_fly_keeps_every_label_and_the_targets(tmp_path):
    path = make_multilabel_csv(tmp_path, n=40, split=False)
    cols = CsvColumns(images=str(tmp_path / "images"), label_sep=";")
    whole = dict(read_table(path, cols).samples)
    parts = open_parts(path, csv=cols, val_fraction=0.25)
    assert parts.task == "multilabel" and set(parts.parts) == {"train", "val"}
    assert sorted(parts.parts["train"] + parts.parts["val"]) == sorted(whole.items())
    for name in ("train", "val"):  # stratified by each photo's rarest label: every colour in both parts
        assert {c for _, t in parts.parts[name] for c in t} == {0, 1, 2}
    assert parts == open_parts(path, csv=cols, val_fraction=0.25)  # reproducible
