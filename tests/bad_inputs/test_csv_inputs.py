"""Labels in a CSV file, attacked as a careless user would (issue 26): every command that reads labelled data
(train, eval, check, split) refuses a bad CSV with one line naming the row, before any work; a good one trains
and evaluates like the folder it lists."""
from __future__ import annotations

import csv

import pytest

from tests.bad_inputs.test_train_inputs import train_args
from tests.conftest import error_line, make_tiny_folder, run_cli


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
def listed(tmp_path):
    """(photos folder, rows of a CSV listing them: path relative to the folder, label)."""
    tree = make_tiny_folder(tmp_path / "photos")
    return tree, [["filename", "class"], *([p.relative_to(tree).as_posix(), p.parent.name]
                                          for p in sorted(tree.rglob("*.jpg")))]


BAD = {
    "missing file": (lambda rows: rows[5].__setitem__(0, "class_0/nope.jpg"),
                     "labels.csv line 6: {images}/class_0/nope.jpg: no such file (relative paths start at --images "
                     "{images}); fix the path or remove the row"),
    "empty label": (lambda rows: rows[7].__setitem__(1, ""),
                    "labels.csv line 8 (class_0/img_006.jpg): empty label; give every row a label or remove the row"),
    "two labels": (lambda rows: rows.append(["class_0/img_000.jpg", "class_2"]),
                   "labels.csv line 38: class_0/img_000.jpg is labelled 'class_2' here and 'class_0' on line 2; keep "
                   "one row per image"),
    "one image": (lambda rows: rows[9].__setitem__(1, "rare"),
                  "labels.csv line 10: label 'rare' has this one image only, so it cannot be in both train and val; "
                  "add images of it or remove the row"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["train", "split"])
def test_a_bad_csv_is_one_line_naming_the_row(listed, tmp_path, capsys, monkeypatch, case, command):
    tree, rows = listed
    edit, says = BAD[case]
    edit(rows)
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "labels.csv", rows)
    argv = (train_args("labels.csv", tmp_path / "runs", "--images", tree) if command == "train" else
            ["split", "labels.csv", "--images", tree, "-o", tmp_path / "out", "--mode", "index"])
    assert run_cli(argv) == 2
    line = error_line(capsys, only=True)  # train names the CSV by its absolute path (what a resume finds)
    assert line.startswith("imgcls: error: ") and line.endswith(says.format(images=tree))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_check_and_eval_name_the_row_too_and_a_single_image_is_fine_to_read_whole(listed, tmp_path, capsys):
    tree, rows = listed
    rows[5][0] = "class_0/nope.jpg"
    write_csv(tmp_path / "labels.csv", rows)
    assert run_cli(["check", tmp_path / "labels.csv", "--images", tree]) == 2
    assert error_line(capsys, only=True).endswith("line 6: " f"{tree}/class_0/nope.jpg: no such file (relative paths "
                                                  f"start at --images {tree}); fix the path or remove the row")
    assert run_cli(["check", tree, "--label-col", "class"]) == 2
    assert error_line(capsys, only=True).startswith("imgcls: error: --label-col reads a CSV file of labels, and")
    rows[5][0], rows[9][1] = "class_0/img_004.jpg", "rare"  # read whole (check, eval), one image is no problem
    write_csv(tmp_path / "labels.csv", rows)
    assert run_cli(["check", tmp_path / "labels.csv", "--images", tree, "--json"]) == 1  # 11:1 is unbalanced
    assert '"rare"' in capsys.readouterr().out


def test_train_eval_and_resume_from_a_csv_with_a_split_column(listed, tmp_path, capsys):
    tree, rows = listed
    rows = [["image", "label", "split"], *([p, c, "val" if i % 4 == 0 else "train"] for i, (p, c) in
                                           enumerate(rows[1:]))]
    labels = write_csv(tree / "labels.csv", rows)  # --images: the CSV's folder by default
    assert run_cli(train_args(labels, tmp_path / "runs", "--epochs", "1")) == 0
    log = (tmp_path / "runs" / "exp1" / "train.log").read_text()
    assert f"on {labels} (images in {tree}), split column: 27 train / 9 val images, 3 classes" in log
    assert run_cli(["eval", tmp_path / "runs" / "exp1" / "best.ckpt", labels, "--part", "val", "-o",
                    tmp_path / "eval", "--workers", "0"]) == 0
    assert "top-1" in capsys.readouterr().out and (tmp_path / "eval" / "report.json").is_file()
    assert run_cli(["train", "--resume", tmp_path / "runs" / "exp1" / "last.ckpt", "--epochs", "2",
                    "--no-progress"]) == 0


MULTI = {
    "empty label in a cell": ("red;;blue", "labels.csv line 4: label cell 'red;;blue' has an empty label between ';' "
                                           "separators; write the labels as a;b;c"),
    "a label twice": ("red;blue;red", "labels.csv line 4: label cell 'red;blue;red' names 'red' twice; name each "
                                      "label once"),
    "empty cell": ("", "labels.csv line 4 (p002.png): empty label; give every row a label or remove the row"),
    "a label seen once": ("red;tram", "labels.csv line 4: label 'tram' has this one image only, so it cannot be in "
                                      "both train and val; add images of it or remove the row"),
}


@pytest.mark.parametrize("case", list(MULTI))
@pytest.mark.parametrize("command", ["train", "check", "split"])
def test_a_bad_multi_label_cell_is_one_line_naming_the_row(tmp_path, capsys, monkeypatch, case, command):
    from tests.multilabel_data import make_multilabel_csv

    labels = make_multilabel_csv(tmp_path / "data", n=12, split=command != "split")
    rows = list(csv.reader(labels.open()))
    rows[3][1] = MULTI[case][0]
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "labels.csv", rows)
    images = tmp_path / "data" / "images"
    argv = {"train": train_args("labels.csv", tmp_path / "runs", "--images", images, "--label-sep", ";"),
            "check": ["check", "labels.csv", "--images", images, "--label-sep", ";"],  # a split column: as train
            "split": ["split", "labels.csv", "--images", images, "--label-sep", ";", "-o", tmp_path / "out"]}[command]
    assert run_cli(argv) == 2
    line = error_line(capsys, only=True)
    assert line.startswith("imgcls: error: ") and line.endswith(MULTI[case][1])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["check", "split"])
def test_check_and_split_refuse_a_blank_label_sep_and_label_sep_without_a_csv(tmp_path, capsys, command):
    from tests.multilabel_data import make_multilabel_csv

    labels = make_multilabel_csv(tmp_path / "data", n=8)
    out = ["-o", tmp_path / "out"] if command == "split" else []
    assert run_cli([command, labels, "--label-sep", " ", *out]) == 2
    assert error_line(capsys, only=True).endswith("--label-sep ' ': give the character between the labels of a "
                                                  "cell, e.g. --label-sep ';'")
    tree = make_tiny_folder(tmp_path / "photos")
    assert run_cli([command, tree, "--label-sep", ";", *out]) == 2
    assert error_line(capsys, only=True).endswith(f"--label-sep reads a CSV file of labels, and {tree} is not one "
                                                  "(a .csv file); drop --label-sep")
    assert not (tmp_path / "out").exists()
