"""`imgcls check` and `imgcls split` on a multi-label CSV (--label-sep, issue 26): check counts a photo once per
label and reports labels per photo, label pairs and the rarest vs the most common label; split stratifies by
each photo's rarest label exactly as training's on-the-fly split does and writes DEST/labels.csv, which a
train run reads back as multi-label."""
from __future__ import annotations

import csv
import json

import pytest

from imgcls.data.check import check_dataset
from imgcls.data.parts import open_parts
from imgcls.data.split import make_split, write_split
from imgcls.data.table import CsvColumns, read_table
from tests.conftest import make_tiny_folder, run_cli
from tests.multilabel_data import make_multilabel_csv

SEP = CsvColumns(label_sep=";")  # a written split: its paths start at its own folder


def ml(labels):
    """How the generated CSV is read: its photos are in images/ beside it."""
    return CsvColumns(images=labels.parent / "images", label_sep=";")


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return make_multilabel_csv(tmp_path_factory.mktemp("ml"), n=32, split=False)


def rows_of(path):
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_check_counts_each_label_of_a_photo_and_reports_labels_per_photo_and_pairs(labels, capsys):
    table = read_table(labels, ml(labels))
    per_label = [sum(c in t for _, t in table.samples) for c in range(3)]
    sizes = [len(t) for _, t in table.samples]
    report = check_dataset(labels, csv=ml(labels))
    assert report.multilabel and report.counts == {"all": per_label} and report.photos == 32
    assert report.labels_per_photo == {k: sizes.count(k) for k in set(sizes)}
    assert report.mean_labels == pytest.approx(sum(sizes) / 32)
    together = sum(0 in t and 2 in t for _, t in table.samples)
    assert ("blue", "red", together) in report.pairs and report.clean
    assert run_cli(["check", labels, "--images", labels.parent / "images", "--label-sep", ";"]) == 0
    out = capsys.readouterr().out
    assert "3 labels, 32 photos (multi-label; a photo counts once for each of its labels)" in out
    assert f"(mean {sum(sizes) / 32:.2f})" in out and "most common / rarest label" in out
    assert run_cli(["check", labels, "--images", labels.parent / "images", "--label-sep", ";", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["multilabel"] and got["photos"] == 32 and got["counts"]["all"] == per_label
    assert got["mean_labels_per_photo"] == pytest.approx(sum(sizes) / 32) and got["clean"]


def test_check_says_which_label_is_rare_and_the_multi_label_remedy(tmp_path):
    path = make_multilabel_csv(tmp_path, n=16, split=False)
    rows = rows_of(path)
    for i, row in enumerate(rows):  # "red" on two photos only, "blue" on every one
        row["labels"] = ";".join(["blue", *(["red"] if i < 2 else []), *(["green"] if i % 2 else [])])
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["path", "labels"], *([r["path"], r["labels"]] for r in rows)])
    report = check_dataset(path, csv=ml(path))
    assert report.imbalance == 8.0
    assert report.findings()["imbalance"] == [
        "labels are unbalanced: blue is on 16 photos, red on 2 (8.0x); a plain run learns to leave rare labels out: "
        "train with --pos-weight balanced (or sqrt) and judge runs by mAP (the default metric for multi-label)"]
    assert report.labels_per_photo == {1: 7, 2: 8, 3: 1} and not report.clean


def test_a_single_label_report_keeps_its_keys(tmp_path):
    got = json.loads(check_dataset(make_tiny_folder(tmp_path / "photos")).to_json())
    assert not {"multilabel", "labels_per_photo", "pairs", "photos", "mean_labels_per_photo"} & set(got)


@pytest.mark.parametrize("seed", [0, 3])
def test_split_is_the_engines_split_disjoint_and_covering_every_row(labels, seed):
    split = make_split(labels, val=0.25, seed=seed, csv=ml(labels))
    engine = open_parts(labels, csv=ml(labels), val_fraction=0.25, split_seed=seed)
    assert engine.multilabel and split.label_sep == ";"
    assert split.parts["train"] == engine.parts["train"] and split.parts["val"] == engine.parts["val"]
    table = read_table(labels, ml(labels))
    files = [p for part in split.parts.values() for p, _ in part]
    assert len(files) == len(set(files)) and sorted(split.parts["train"] + split.parts["val"]) == table.samples
    in_train = {c for _, t in split.parts["train"] for c in t}
    assert in_train == {c for c in range(3) if sum(c in t for _, t in table.samples) >= 2}
    assert split.counts()["val"] == [sum(c in t for _, t in split.parts["val"]) for c in range(3)]


@pytest.mark.parametrize("mode", ["index", "copy", "link"])
def test_a_written_split_reads_back_as_the_same_multi_label_parts(labels, tmp_path, mode):
    split = make_split(labels, val=0.25, test=0.15, seed=1, csv=ml(labels))
    where = write_split(split, tmp_path / "out", mode=mode)
    assert where == tmp_path / "out" / "labels.csv"
    back = open_parts(where, csv=SEP)
    assert back.multilabel and back.classes == split.classes
    for part in ("train", "val", "test"):
        assert [t for _, t in back.parts[part]] == [t for _, t in split.parts[part]], part
        if mode == "index":
            assert [p for p, _ in back.parts[part]] == [p for p, _ in split.parts[part]]
        else:
            assert all(p.parent == tmp_path / "out" / part for p, _ in back.parts[part])
            assert [p.read_bytes() for p, _ in back.parts[part]] == [p.read_bytes() for p, _ in split.parts[part]]
            assert all(p.is_symlink() == (mode == "link") for p, _ in back.parts[part])
    again = make_split(labels, val=0.25, seed=1, csv=ml(labels))  # --force replaces it, removing only what it wrote
    (tmp_path / "out" / "mine.txt").write_text("kept")
    write_split(again, tmp_path / "out", mode=mode, force=True)
    assert (tmp_path / "out" / "mine.txt").read_text() == "kept"
    assert not (tmp_path / "out" / "test").exists() and "test" not in open_parts(where, csv=SEP).parts


def test_a_comma_separator_is_written_tab_delimited_and_reads_back(labels, tmp_path):
    rows = rows_of(labels)
    comma = tmp_path / "comma.csv"
    with comma.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t").writerows([["path", "labels"],
                                                 *([r["path"], r["labels"].replace(";", ",")] for r in rows)])
    cols = CsvColumns(images=labels.parent / "images", label_sep=",")
    split = make_split(comma, val=0.25, seed=0, csv=cols)
    where = write_split(split, tmp_path / "out", mode="index")
    assert "\t" in where.read_text().splitlines()[0]
    back = open_parts(where, csv=CsvColumns(label_sep=","))
    assert back.parts["val"] == split.parts["val"] == make_split(labels, val=0.25, seed=0, csv=ml(labels)).parts["val"]


def test_the_cli_split_trains_back_as_multi_label(labels, tmp_path, capsys):
    from imgcls.engine.checkpoint import load_checkpoint

    dest = tmp_path / "split"
    assert run_cli(["split", labels, "--images", labels.parent / "images", "--label-sep", ";", "-o", dest,
                    "--mode", "link", "--val", "0.25"]) == 0
    out = capsys.readouterr().out
    assert f"train on it with: imgcls train {dest / 'labels.csv'} --label-sep ';'" in out
    assert run_cli(["train", dest / "labels.csv", "--label-sep", ";", "--model", "resnet18", "--input-size", "32",
                    "--batch-size", "8", "--workers", "0", "--epochs", "1", "--out-dir", tmp_path / "runs",
                    "--no-progress", "--no-tensorboard"]) == 0
    ckpt = load_checkpoint(next((tmp_path / "runs").glob("*/best.ckpt")))
    assert ckpt["task"] == "multilabel" and ckpt["classes"] == ["blue", "green", "red"]


def test_a_photo_stored_twice_with_other_labels_is_found_by_check_and_dropped_by_split_dedup(tmp_path):
    import shutil

    path = make_multilabel_csv(tmp_path, n=16, split=False)
    rows = rows_of(path)
    shutil.copy(tmp_path / "images" / rows[0]["path"], tmp_path / "images" / "copy.png")
    other = "red" if rows[0]["labels"] != "red" else "blue"
    with path.open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(["copy.png", other])
    report = check_dataset(path, csv=ml(path))
    assert report.findings()["same image with different labels"] == [
        f"{tmp_path / 'images' / 'copy.png'} == {tmp_path / 'images' / rows[0]['path']}"]
    split = make_split(path, val=0.25, seed=0, csv=ml(path), duplicates="drop")
    kept = {p.name for part in split.parts.values() for p, _ in part}
    assert len(kept) == 15 and "copy.png" not in kept and rows[0]["path"] not in kept
    assert split.duplicate_warnings()[0].startswith("1 image(s) stored with two or more label sets (no true label)")
