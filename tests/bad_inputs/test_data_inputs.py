"""`imgcls split` and `imgcls check` attacked as a careless user would: a mistake is one line and exit 2
before anything is touched, `--force` never deletes a file no split wrote, every bad file is named."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from imgcls.data import open_dataset
from tests.conftest import error_line, make_tiny_folder, run_cli


cli = run_cli


def one_error_line(capsys) -> str:
    return error_line(capsys, only=True)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below `root` (links as their target) and its bytes."""
    return {p.relative_to(root).as_posix(): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
            for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def make_photos(root: Path, layout: dict[str, tuple[int, int]]) -> Path:
    """`layout`: class -> (number of images, side); image i of a class has its own colour."""
    for k, (cls, (n, side)) in enumerate(layout.items()):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (side, side), (k * 40, i * 9, 0)).save(root / cls / f"{cls}{i:02d}.png")
    return root


@pytest.fixture
def photos(tmp_path) -> Path:
    return make_photos(tmp_path / "photos", {"a": (10, 40), "b": (10, 40)})


# -- split: the destination never overlaps the source ----------------------------------------------

def test_source_inside_destination_with_force_keeps_the_source(tmp_path, capsys):
    """The reported data loss: `imgcls split flowers/train -o flowers --force` removed flowers/train."""
    flowers = tmp_path / "flowers"
    make_photos(flowers / "train", {"a": (10, 40), "b": (10, 40)})
    before = snapshot(flowers)
    assert cli(["split", flowers / "train", "-o", flowers, "--force"]) == 2
    assert "the destination holds the source" in one_error_line(capsys)
    assert snapshot(flowers) == before


@pytest.mark.parametrize("dest, says", [
    ("photos", "the destination is the source"),
    ("photos/a/out", "the destination is inside the source"),
    ("alias_of_parent", "the destination holds the source"),  # tmp/alias_of_parent -> tmp
    ("alias_of_a/out", "the destination is inside the source"),  # a symlink on the way into photos/a
    ("alias_of_photos", "the destination is the source"),
])
def test_every_overlap_is_refused_before_anything_is_touched(photos, tmp_path, capsys, dest, says):
    (tmp_path / "alias_of_parent").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "alias_of_a").symlink_to(photos / "a", target_is_directory=True)
    (tmp_path / "alias_of_photos").symlink_to(photos, target_is_directory=True)
    before = snapshot(photos)
    for mode in ("copy", "link", "index"):
        assert cli(["split", photos, "-o", tmp_path / dest, "--force", "--mode", mode]) == 2
        line = one_error_line(capsys)
        assert says in line and "choose" in line
    assert snapshot(photos) == before
    assert not (photos / "a" / "out").exists() and not (tmp_path / "train").exists()


def test_a_source_given_through_a_symlink_is_protected_too(photos, tmp_path, capsys):
    (tmp_path / "alias").symlink_to(photos, target_is_directory=True)
    before = snapshot(photos)
    assert cli(["split", tmp_path / "alias" / "a" / "..", "-o", photos / "b", "--force"]) == 2
    assert "inside the source" in one_error_line(capsys)
    assert snapshot(photos) == before


# -- split: --force removes only what an earlier split wrote ----------------------------------------

def test_force_refuses_a_folder_no_split_wrote(photos, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "train").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / "train" / "keep.jpg").write_bytes(b"my photo")  # the old --force removed dest/train wholesale
    before = snapshot(mine)
    for force in ([], ["--force"]):
        assert cli(["split", photos, "-o", mine, *force]) == 2
        line = one_error_line(capsys)
        assert "holds no earlier imgcls split" in line and "--force only replaces an earlier split" in line
    assert snapshot(mine) == before


def test_force_replaces_an_earlier_split_and_keeps_the_users_files(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["split", photos, "-o", out, "--val", "0.5"]) == 0
    first = snapshot(out)
    assert json.loads((out / ".imgcls-split.json").read_text())["files"] == sorted(
        k for k in first if k != ".imgcls-split.json")
    (out / "README.txt").write_text("mine")
    (out / "train" / "a" / "extra.png").write_bytes(b"mine too")
    assert cli(["split", photos, "-o", out]) == 2  # no --force: refused, nothing changed
    assert "earlier split; pass --force" in one_error_line(capsys)
    assert cli(["split", photos, "-o", out, "--force", "--mode", "index"]) == 0
    after = snapshot(out)
    assert sorted(after) == [".imgcls-split.json", "README.txt", "split.json", "train/a/extra.png"]
    assert after["README.txt"] == b"mine" and after["train/a/extra.png"] == b"mine too"
    assert not (out / "val").exists()  # the folders the first split made are gone once empty
    assert len(open_dataset(out, "val")) == 2


def test_a_users_file_in_the_way_of_the_new_split_is_refused(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["split", photos, "-o", out, "--mode", "index"]) == 0
    (out / "train").write_text("a file where the split wants a folder")
    assert cli(["split", photos, "-o", out, "--force"]) == 2
    assert "train: is in the way" in one_error_line(capsys)
    assert (out / "split.json").is_file()  # refused before anything was removed


def test_a_tampered_manifest_cannot_reach_outside(photos, tmp_path, capsys):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text("precious")
    assert cli(["split", photos, "-o", out, "--mode", "index"]) == 0
    (out / ".imgcls-split.json").write_text(json.dumps({"files": ["../victim.txt"], "dirs": []}))
    assert cli(["split", photos, "-o", out, "--force"]) == 2
    assert "not a manifest written by imgcls split" in one_error_line(capsys)
    assert victim.read_text() == "precious"


# -- split: byte-identical files ---------------------------------------------------------------------

@pytest.fixture
def with_duplicates(photos) -> Path:
    shutil.copy(photos / "a" / "a00.png", photos / "b" / "b_from_a.png")  # one photo, two labels
    shutil.copy(photos / "b" / "b01.png", photos / "b" / "b01_again.png")  # twice in one class
    return photos


def test_split_warns_about_duplicates(with_duplicates, tmp_path, capsys):
    assert cli(["split", with_duplicates, "-o", tmp_path / "out", "--mode", "index", "--val", "0.5"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("imgcls: warning: 1 image(s) stored in two or more classes (no true label)")
    assert "a/a00.png == b/b_from_a.png" in err[0] and err[0].endswith("--dedup drops every copy")
    assert err[1].startswith("imgcls: warning: 1 image(s) stored more than once in one class")
    assert "b/b01.png == b/b01_again.png" in err[1]
    assert len(open_dataset(tmp_path / "out", "train")) + len(open_dataset(tmp_path / "out", "val")) == 22


def test_dedup_drops_ambiguous_images_and_extra_copies(with_duplicates, tmp_path, capsys):
    assert cli(["split", with_duplicates, "-o", tmp_path / "out", "--mode", "index", "--dedup"]) == 0
    assert "dropped every copy (--dedup)" in capsys.readouterr().err
    names = {p.name for part in ("train", "val") for p, _ in open_dataset(tmp_path / "out", part).samples}
    assert len(names) == 22 - 3
    assert not names & {"a00.png", "b_from_a.png", "b01_again.png"} and "b01.png" in names


# -- broken and looping symbolic links -------------------------------------------------------------

@pytest.fixture
def with_links(photos) -> Path:
    (photos / "a" / "gone.jpg").symlink_to("nowhere.jpg")
    (photos / "b" / "l1.jpg").symlink_to("l2.jpg")
    (photos / "b" / "l2.jpg").symlink_to("l1.jpg")
    (photos / "b" / "again").symlink_to("..", target_is_directory=True)  # a folder loop: must not hang
    return photos


def test_check_reports_broken_and_looping_links(with_links, capsys):
    assert cli(["check", with_links]) == 1
    out = capsys.readouterr().out
    assert "unreadable: 3" in out
    assert "a/gone.jpg: broken symbolic link -> nowhere.jpg" in out
    assert "b/l1.jpg: symbolic link loop (-> l2.jpg)" in out and "b/l2.jpg: symbolic link loop (-> l1.jpg)" in out


def test_training_does_not_silently_skip_broken_links(with_links, tmp_path, capsys):
    args = ["train", with_links, "--model", "resnet18", "--input-size", "32", "--epochs", "1", "--workers", "0",
            "--out-dir", tmp_path / "runs", "--no-progress", "--no-tensorboard"]
    assert cli(args) == 2
    line = one_error_line(capsys)
    assert "3 unreadable image(s)" in line and "broken symbolic link -> nowhere.jpg" in line


def test_split_carries_broken_links_along_instead_of_crashing(with_links, tmp_path, capsys):
    assert cli(["split", with_links, "-o", tmp_path / "out", "--val", "0"]) == 0
    assert os.readlink(tmp_path / "out" / "train" / "a" / "gone.jpg") == "nowhere.jpg"
    assert cli(["check", tmp_path / "out"]) == 1
    assert "broken symbolic link -> nowhere.jpg" in capsys.readouterr().out


# -- files that are not images ---------------------------------------------------------------------

@pytest.mark.parametrize("content, says", [
    (b"", "not an image: empty file"),
    (b"<!DOCTYPE html>\n<html><body>Sign in to see this photo</body></html>",
     "not an image: looks like HTML (a saved web page?)"),
    (b"Access denied\r\n", "not an image: looks like text"),
    (bytes(range(200, 240)), "not an image: unknown format (first bytes 0xc8c9cacbcccdcecf)"),
])
def test_check_says_what_a_non_image_is(photos, capsys, content, says):
    (photos / "a" / "fake.jpg").write_bytes(content)
    assert cli(["check", photos]) == 1
    out = capsys.readouterr().out
    assert f"a/fake.jpg: {says}; delete or replace it, or pass --skip-bad" in out and "BytesIO" not in out


# -- check: findings grouped, size flagged only on request -----------------------------------------

def test_check_groups_findings_and_keeps_everything_in_json(tmp_path, capsys):
    root = make_photos(tmp_path / "s", {"a": (12, 20), "b": (4, 100)})  # 12 icons below 32 px; 3:1, not unbalanced
    assert cli(["check", root]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "smaller than 32px: 12" in out and "  ... and 7 more (--verbose lists them all)" in out
    assert sum("(20x20)" in line for line in out) == 5 and out[-1] == "12 finding(s)"
    assert cli(["check", root, "--verbose"]) == 1
    assert capsys.readouterr().out.count("(20x20)") == 12
    assert cli(["check", root, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["too_small"]) == 12 and report["min_side"] == 32 and report["clean"] is False


def test_photos_below_224_are_not_findings_unless_asked(photos, capsys):
    assert cli(["check", photos]) == 0  # 40 px: upsampled by the transforms, not flagged by default
    assert capsys.readouterr().out.splitlines()[-1] == "clean"
    assert cli(["check", photos, "--min-side", "224"]) == 1
    assert "smaller than 224px: 20" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-5"])
def test_min_side_must_be_positive(photos, capsys, value):
    assert cli(["check", photos, "--min-side", value]) == 2
    assert one_error_line(capsys) == (f"imgcls: error: --min-side {value}: must be at least 1 (pixels); leave it "
                                      "out to flag only images below 32 px")


def test_one_class_is_a_finding(tmp_path, capsys):
    root = make_tiny_folder(tmp_path / "one", classes=1, per_class=3)
    assert cli(["check", root]) == 1
    assert "need at least 2 classes to train a classifier" in capsys.readouterr().out
    assert cli(["check", root, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["problems"][0].startswith("one class (class_0)")


# -- file names that are not UTF-8 -----------------------------------------------------------------

@pytest.fixture
def undecodable(photos) -> Path:
    """A class folder and a file whose names are not UTF-8 (any bytes are allowed on Linux)."""
    folder = os.fsencode(photos) + b"/c\xfe"
    os.mkdir(folder)
    for name in (b"bad\xff.png", b"ok.png"):
        fd = os.open(folder + b"/" + name, os.O_WRONLY | os.O_CREAT)
        with os.fdopen(fd, "wb") as f:
            Image.new("RGB", (40, 40), (0, 0, 200 + len(name))).save(f, "PNG")
    return photos


def test_split_index_with_undecodable_names(undecodable, tmp_path, capsys):
    assert cli(["split", undecodable, "-o", tmp_path / "out", "--mode", "index", "--val", "0.5"]) == 0
    assert "c\\xfe" in capsys.readouterr().out  # the table names the class, escaped
    ds = open_dataset(tmp_path / "out", "train")
    ds_val = open_dataset(tmp_path / "out", "val")
    names = {os.fsencode(p.name) for p, _ in ds.samples + ds_val.samples}
    assert b"bad\xff.png" in names  # the index gives back the real name, which opens
    assert all(ds[i][0].size == (40, 40) for i in range(len(ds)))


def test_check_with_undecodable_names(undecodable, capsys):
    assert cli(["check", undecodable, "--min-side", "64", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "c\\xfe" in report["classes"]
    assert any(path.endswith("c\\xfe/bad\\xff.png") for path, _, _ in report["too_small"])
    assert cli(["check", undecodable, "--min-side", "64", "--verbose"]) == 1
    assert "c\\xfe/bad\\xff.png (40x40)" in capsys.readouterr().out


# -- control characters in names, a file given to check --------------------------------------------

@pytest.mark.parametrize("name, shown", [("a\x1b[31mred.jpg", "a\\x1b[31mred.jpg"),
                                         ("two\nlines.jpg", "two\\x0alines.jpg")])
def test_check_escapes_control_characters_in_names(photos, capsys, name, shown):
    (photos / "a" / name).write_bytes(b"nope")  # unreadable: check names it
    (photos / "b\x1b[2J").mkdir()  # ESC [2J would clear the terminal
    shutil.copy(photos / "b" / "b00.png", photos / "b\x1b[2J" / "x.png")
    assert cli(["check", photos, "--verbose"]) == 1
    out = capsys.readouterr().out
    assert f"a/{shown}: not an image" in out and "b\\x1b[2J" in out
    assert "\x1b" not in out and "two\nlines" not in out
    assert cli(["check", photos, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert any(path.endswith(f"a/{shown}") for path, _ in report["bad_files"]) and "b\\x1b[2J" in report["classes"]


def test_an_error_line_escapes_control_characters(tmp_path, capsys):
    assert cli(["check", tmp_path / "gone\x1b[31m"]) == 2
    assert one_error_line(capsys).startswith(f"imgcls: error: {tmp_path}/gone\\x1b[31m: no such folder")


def test_check_on_a_file_says_it_is_a_file(photos, capsys):
    assert cli(["check", photos / "a" / "a00.png"]) == 2
    assert one_error_line(capsys) == (f"imgcls: error: {photos / 'a' / 'a00.png'}: a file; imgcls check needs a "
                                      "folder (one sub-folder of images per class, or a split folder with train/ "
                                      "val/ test/), a split.json index or a CSV file of labels")
