"""One reading of a dataset argument: list_images (the one scan of a folder of photos) and open_parts
(a class-per-folder tree, a split folder, a split.json index, --val-data), and the one unreadable-image
policy of the commands that read labelled data."""
from __future__ import annotations

import json
import logging
import shutil

import pytest
from PIL import Image

from imgcls.data import list_images, make_split, open_parts, write_split
from imgcls.data.parts import UNLABELLED
from imgcls.errors import DataError


def _photos(root, names):
    for rel in names:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (9, 9, 9)).save(root / rel, format="PNG")
    return root


def test_list_images_is_the_one_scan(tmp_path):
    root = _photos(tmp_path / "p", ["b/2.png", "a/x/1.PNG", "top.Jpeg", "a/.hidden.png", ".thumbs/t.png"])
    (root / "notes.txt").write_text("not an image")
    (root / "gone.jpg").symlink_to("nowhere.jpg")  # broken: kept, so that it is reported, not skipped unsaid
    (root / "a" / "up").symlink_to("..", target_is_directory=True)  # a linked folder: not descended into
    assert [p.relative_to(root).as_posix() for p in list_images(root)] == [
        ".thumbs/t.png", "a/x/1.PNG", "b/2.png", "gone.jpg", "top.Jpeg"]


# -- open_parts: every layout read one way -----------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    return _photos(tmp_path / "tree", [f"{c}/{c}{i:02d}.png" for c, n in (("a", 8), ("b", 5)) for i in range(n)])


def _rel(samples, root):
    return [(p.relative_to(root).as_posix(), t) for p, t in samples]


def test_a_tree_is_read_whole_or_split_on_the_fly_as_imgcls_split_splits_it(tree):
    whole = open_parts(tree)
    assert whole.classes == ["a", "b"] and list(whole.parts) == ["all"] and whole.description == str(tree)
    assert _rel(whole.parts["all"], tree)[:2] == [("a/a00.png", 0), ("a/a01.png", 0)] and len(whole.files()) == 13
    on_the_fly = open_parts(tree, only=("train", "val"), val_fraction=0.25, split_seed=3)
    split = make_split(tree, val=0.25, seed=3)
    assert on_the_fly.parts == {"train": split.parts["train"], "val": split.parts["val"]}
    assert on_the_fly.split.parts == split.parts and on_the_fly.roots == {"train": tree, "val": tree}
    assert on_the_fly.description == f"{tree}, stratified split val=0.25 seed=3"
    with pytest.raises(DataError, match=r"tree: --val-fraction 0.1 leaves no validation images"):
        open_parts(tree, val_fraction=0.1)  # int(5 * 0.1) = int(8 * 0.1) = 0 per class


@pytest.mark.parametrize("mode", ["copy", "index"])
def test_a_split_folder_and_an_index_give_the_same_parts(tree, tmp_path, mode):
    split = make_split(tree, val=0.25, seed=1)
    written = write_split(split, tmp_path / "out", mode=mode)
    parts = open_parts(tmp_path / "out", only=("train", "val"))
    assert parts.classes == ["a", "b"] and list(parts.parts) == ["train", "val"]
    for name in ("train", "val"):
        root = tree if mode == "index" else tmp_path / "out" / name
        assert _rel(parts.parts[name], root) == _rel(split.parts[name], tree)
    if mode == "index":
        assert parts.description == f"split index {tmp_path / 'out'}" and parts.roots["val"] == tmp_path / "out"
        assert open_parts(written).parts == open_parts(tmp_path / "out").parts  # split.json or its folder
        assert list(open_parts(written).parts) == ["train", "val", "test"]  # every part an index has
    else:
        assert parts.description == f"{tmp_path / 'out' / 'train'} and {tmp_path / 'out' / 'val'}"


def test_val_data_is_the_val_part_whatever_the_layout(tree, tmp_path):
    val = _photos(tmp_path / "v", ["a/x.png", "b/y.png"])
    plain = open_parts(tree, only=("train", "val"), val_data=val, val_fraction=0.25)
    assert plain.description == f"{tree} and {val}" and len(plain.parts["train"]) == 13  # not split
    assert _rel(plain.parts["val"], val) == [("a/x.png", 0), ("b/y.png", 1)] and plain.roots["val"] == val
    folder = write_split(make_split(tree, val=0.25), tmp_path / "out")
    shutil.rmtree(folder / "val")  # --val-data replaces DATA/val: the folder need not be there
    assert open_parts(folder, only=("train", "val"), val_data=val).description == f"{folder / 'train'} and {val}"
    index = write_split(make_split(tree, val=0.25), tmp_path / "index", mode="index")
    parts = open_parts(index, only=("train", "val"), val_data=val)
    assert parts.description == f"split index {index} and {val}" and len(parts.parts["val"]) == 2


def test_a_bad_index_a_missing_part_and_other_classes_are_one_line(tree, tmp_path):
    (tmp_path / "split.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(DataError, match=r"split.json: not a split index written by `imgcls split --mode index` "
                                        r"\('source'\)"):
        open_parts(tmp_path / "split.json")
    with pytest.raises(DataError, match=r"nope: no such folder; give a class-per-folder set, a split folder or "
                                        r"split.json"):
        open_parts(tmp_path / "nope")
    folder = write_split(make_split(tree, val=0.0), tmp_path / "out")  # train/ only
    with pytest.raises(DataError, match=r"out: has no part 'val'; it has \['train'\]$"):
        open_parts(folder, only=("train", "val"))
    with pytest.raises(DataError, match=r"tree: has no part 'val': it is one class-per-folder set, not a split"):
        open_parts(tree, only=("val",))
    other = _photos(tmp_path / "v", ["a/x.png", "c/y.png"])
    with pytest.raises(DataError, match=rf"^{other}: classes \['a', 'c'\] differ from {tree}'s \['a', 'b'\]; use "
                                        "the same class folders$"):
        open_parts(tree, val_data=other)


def test_a_command_that_reads_one_part_chooses_it_or_asks(tree, tmp_path):
    assert open_parts(tree).choose(None) == "all"
    index = write_split(make_split(tree, val=0.25), tmp_path / "index", mode="index")
    with pytest.raises(DataError, match=r"index/split.json: a split index; say which part to read \(train, val or "
                                        r"test\)"):
        open_parts(index).choose(None)
    assert open_parts(index).choose("val") == "val"
    folder = write_split(make_split(tree, val=0.25), tmp_path / "out")
    with pytest.raises(DataError, match=r"out: a split folder; say which part to read"):
        open_parts(folder).choose(None)
    (folder / "train").rename(tmp_path / "elsewhere")
    assert open_parts(folder).choose(None) == "val"  # a split folder without train/: its val part


def test_photos_only_need_no_class_folders(tmp_path):
    flat = _photos(tmp_path / "flat", ["1.png", "2.png"])
    parts = open_parts(flat, labels=False)
    assert parts.classes == [] and parts.parts == {"all": [(flat / "1.png", UNLABELLED), (flat / "2.png", UNLABELLED)]}
    split = _photos(tmp_path / "split", ["train/1.png", "val/2.png"])
    assert open_parts(split, labels=False).files("train") == [split / "train" / "1.png"]
    with pytest.raises(DataError, match="no class folders"):
        open_parts(flat)


def test_unreadable_images_stop_before_any_work_or_are_left_out_and_said(tmp_path, caplog):
    root = _photos(tmp_path / "s", [f"{part}/{c}/1.png" for part in ("train", "val") for c in "ab"])
    (root / "train" / "a" / "gone.png").symlink_to("nowhere.png")
    (root / "val" / "b" / "broken.png").write_bytes(b"nope")
    parts = open_parts(root)
    with pytest.raises(DataError) as e:  # part after part: train's are named first
        parts.readable("train", "val", skip_bad=False)
    assert str(e.value) == (f"1 unreadable image(s) in {root / 'train'}: {root / 'train' / 'a' / 'gone.png'} (broken "
                            "symbolic link -> nowhere.png; fix or delete the link, or pass --skip-bad) — delete or "
                            "replace them, or pass --skip-bad")
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        kept, skipped = parts.readable("train", "val", skip_bad=True)
    assert skipped == [root / "train" / "a" / "gone.png", root / "val" / "b" / "broken.png"]
    assert f"skipped 2 unreadable image(s): {root / 'train' / 'a' / 'gone.png'}, " in caplog.text
    assert len(kept.files()) == 4 and len(parts.files()) == 6  # a new DatasetParts: the old one is intact
    ds = kept.dataset("val")  # built once, from the files kept
    assert ds.classes == ["a", "b"] and ds.samples == kept.parts["val"] and ds.root == root / "val"


def test_every_unreadable_file_is_counted_and_five_named(tree):
    for i in range(7):
        (tree / "a" / f"bad{i}.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        open_parts(tree).readable("all", skip_bad=False)
    line = str(e.value)
    assert line.startswith(f"7 unreadable image(s) in {tree}: {tree / 'a' / 'bad0.png'} (")
    assert "bad4.png" in line and "bad5.png" not in line and f"; and 2 more (imgcls check {tree} lists them all)" in line
