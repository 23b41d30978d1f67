"""Segmentation data and runs attacked as a careless user would: each mistake is one line naming the file or
flag and exit 2 before any work (nothing written); `imgcls check` lists every problem with its file, exit 1."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import error_line, make_tiny_folder, run_cli
from tests.seg_data import make_seg_folder, mask_pattern, photo_of


def train(data, out, *extra):
    return run_cli(["train", data, "--model", "lraspp_efficientnet_lite0", "--input-size", 32, "--batch-size", 2,
                    "--epochs", 1, "--workers", 0, "--no-progress", "--no-tensorboard", "--out-dir", out, *extra])


@pytest.fixture
def seg(tmp_path):
    return make_seg_folder(tmp_path / "seg")


def refused(capsys, code, *needles):
    line = error_line(capsys, only=True)
    assert code == 2, line
    for needle in needles:
        assert needle in line, line
    return line


def test_photo_without_a_mask(seg, tmp_path, capsys):
    (seg / "train/masks/train01.png").unlink()
    refused(capsys, train(seg, tmp_path / "runs"), "train01.png (no mask)", "--skip-bad")
    assert not (tmp_path / "runs").exists()


def test_rgb_mask_with_a_colour_not_in_the_palette(seg, tmp_path, capsys):
    colours = photo_of(mask_pattern(48, 32, 0))
    colours[3, 9] = (7, 7, 7)
    Image.fromarray(colours).save(seg / "val/masks/val00.png")
    refused(capsys, train(seg, tmp_path / "runs"), "val00.png", "an RGB mask with colour (7, 7, 7) at x=9 y=3",
            "not in the palette")


def test_mask_of_another_size_and_values_out_of_range(seg, tmp_path, capsys):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(seg / "train/masks/train00.png")
    bad = mask_pattern(48, 32, 0)
    bad[5, 5] = 40
    Image.fromarray(bad).save(seg / "train/masks/train02.png")
    refused(capsys, train(seg, tmp_path / "runs"), "10x10 px, its photo train00.png is 48x32",
            "values 40 are neither a class (0..2) nor void (3)")


def test_a_broken_class_file(seg, tmp_path, capsys):
    (seg / "classes.json").write_text('{"classes": ["a", "b", "c"], "void": 1}')
    refused(capsys, train(seg, tmp_path / "runs"), "classes.json", "\"void\" index 1")


@pytest.mark.parametrize("flags, needle", [
    (["--model", "resnet18"], "photos with masks (segmentation), but resnet18 is a classification model"),
    (["--mixup", 0.2], "--mixup: mixes labels of whole images"),
    (["--transfer", "head"], "--transfer head trains a classifier on cached features"),
    (["--feature-views", 2, "--transfer", "last:classifier"], "--feature-views 2: a segmentation model trains"),
])
def test_settings_that_do_not_apply(seg, tmp_path, capsys, flags, needle):
    refused(capsys, train(seg, tmp_path / "runs", *flags), needle)
    assert not (tmp_path / "runs").exists()


def test_check_names_every_problem(seg, capsys):
    (seg / "train/masks/train01.png").unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(seg / "val/masks/val00.png")
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(seg / "val/masks/stray.png")
    assert run_cli(["check", seg]) == 1
    out = capsys.readouterr().out
    assert "photo without a mask: 1" in out and "train01.png" in out
    assert "mask without a photo: 1" in out and "stray.png" in out
    assert "unusable mask: 1" in out and "val00.png: 10x10 px" in out
    assert "pixel shares" in out


def test_eval_of_a_segmentation_model_on_class_folders(seg, tmp_path, capsys):
    assert train(seg, tmp_path / "runs") == 0
    folder = make_tiny_folder(tmp_path / "photos")
    capsys.readouterr()
    code = run_cli(["eval", tmp_path / "runs/exp1/best.ckpt", folder])
    refused(capsys, code, "a class-per-folder set, but", "is a segmentation model")
