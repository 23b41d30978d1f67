"""`imgcls predict` and `imgcls eval` with a segmentation checkpoint: a palette mask at each photo's own size,
the overlay, class shares; scores brought back to the photo's size in bands equal to one resize; what
the classifier-only commands say."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from imgcls.inference.seg_predict import upsampled_argmax
from tests.conftest import error_line, run_cli
from tests.seg_data import NAMES, PALETTE, make_seg_folder, mask_pattern, photo_of


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("segrun")
    data = make_seg_folder(root / "data")
    code = run_cli(["train", data, "--model", "lraspp_efficientnet_lite0", "--input-size", 32, "--batch-size", 2,
                    "--epochs", 1, "--workers", 0, "--no-progress", "--no-tensorboard", "--out-dir", root / "runs"])
    assert code == 0
    return data, root / "runs" / "exp1" / "best.ckpt"


@pytest.mark.parametrize("size, band", [((37, 53), 1 << 30), ((37, 53), 4 * 3 * 53 * 2), ((8, 5), 1)])
def test_banded_upsampling_equals_one_resize(size, band):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    want = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)
    got = upsampled_argmax(logits, size, band_bytes=band)
    assert got.shape == size and (torch.from_numpy(got).long() == want).float().mean() > 0.999


def test_predict_writes_a_palette_mask_at_the_photos_size(seg_run, tmp_path, capsys):
    data, ckpt = seg_run
    Image.fromarray(photo_of(mask_pattern(70, 50, 3))).save(tmp_path / "other.png")  # not the training size
    capsys.readouterr()
    assert run_cli(["predict", ckpt, data / "val/images/val00.png", tmp_path / "other.png", "--json",
                    "-o", tmp_path / "out"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["error"] for r in results] == [None, None]
    mask = Image.open(tmp_path / "out" / "other.png")
    assert mask.mode == "P" and mask.size == (70, 50)
    assert mask.getpalette()[:12] == [v for c in PALETTE for v in c]
    assert set(np.unique(np.asarray(mask))) <= {0, 1, 2}
    assert Image.open(tmp_path / "out" / "other_overlay.jpg").size == (70, 50)
    shares = results[1]["shares"]
    assert set(shares) <= set(NAMES) and sum(shares.values()) == pytest.approx(1.0)


def test_predict_names_unreadable_files_and_goes_on(seg_run, tmp_path, capsys):
    data, ckpt = seg_run
    (tmp_path / "bad.jpg").write_text("hello")
    code = run_cli(["predict", ckpt, tmp_path / "bad.jpg", data / "val/images/val01.png", "-o", tmp_path / "out"])
    captured = capsys.readouterr()
    assert code == 1 and "bad.jpg: error: not an image: looks like text" in captured.out
    assert "val01.png" in captured.out and (tmp_path / "out" / "val01.png").is_file()


def test_the_default_folder_is_beside_the_checkpoint(seg_run, capsys):
    data, ckpt = seg_run
    assert run_cli(["predict", ckpt, data / "val/images/val00.png"]) == 0
    assert (ckpt.parent / "masks" / "val00.png").is_file()


@pytest.mark.parametrize("argv, needle", [
    (["cam", "CKPT", "PHOTO"], "a segmentation model; `imgcls predict` writes its masks"),
    (["predict", "CKPT", "PHOTO", "--csv"], "--csv: CKPT is a segmentation model"),
    (["serve", "CKPT", "--port", "0", "--abstain", "0.5"], "--abstain applies to classifiers; CKPT is a "
                                                             "segmentation model"),
])
def test_classifier_only_commands_refuse_in_one_line(seg_run, tmp_path, capsys, argv, needle):
    data, ckpt = seg_run
    names = {"CKPT": str(ckpt), "PHOTO": str(data / "val/images/val00.png"), "OUT": str(tmp_path / "x.onnx")}
    argv = [names.get(a, a) for a in argv]
    capsys.readouterr()
    assert run_cli(argv) == 2
    assert needle.replace("CKPT", str(ckpt)) in error_line(capsys, only=True)
