"""Real data: ../shared/data/camvid (11 classes, void 11, 480 x 360). A small copy (8 train + 4 val photos)
trains lraspp_efficientnet_lite0 from efficientnet_lite0's ImageNet weights for 2 epochs at 96 px crops of
photos scaled to a 128 px shorter side, resumes, and is evaluated; `imgcls check` reports the shares; a small
FCN-8s trained there predicts, exports, predicts from its .onnx and serves the same masks."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def camvid(shared):
    root = shared / "data" / "camvid"
    if not (root / "classes.json").is_file():
        pytest.skip(f"{root} is absent")
    return root


@pytest.fixture(scope="module")
def small_camvid(camvid, tmp_path_factory):
    out = tmp_path_factory.mktemp("camvid") / "camvid"
    for part, n in (("train", 8), ("val", 4)):
        for kind in ("images", "masks"):
            (out / part / kind).mkdir(parents=True)
        for photo in sorted((camvid / part / "images").iterdir())[:n]:
            shutil.copy(photo, out / part / "images" / photo.name)
            shutil.copy(camvid / part / "masks" / f"{photo.stem}.png", out / part / "masks" / f"{photo.stem}.png")
    shutil.copy(camvid / "classes.json", out / "classes.json")
    return out


def test_check_reports_camvids_pixel_shares(camvid, capsys):
    from imgcls.data.check import check_dataset

    report = check_dataset(camvid)
    assert report.clean and report.images == {"train": 367, "val": 101}
    road, bicyclist = report.shares["train"][3], report.shares["train"][10]
    assert round(100 * road, 1) == 31.7 and round(100 * bicyclist, 1) == 0.3  # the README's table
    assert round(100 * report.void_share["train"], 1) == 3.9


def test_train_resume_and_eval_on_a_small_camvid(small_camvid, tmp_path, capsys):
    common = [small_camvid, "--model", "lraspp_efficientnet_lite0", "--weights", "efficientnet_lite0.in1k",
              "--input-size", 96, "--resize-size", 128, "--batch-size", 4, "--workers", 0, "--no-progress",
              "--no-tensorboard", "--out-dir", tmp_path / "runs"]
    assert run_cli(["train", *common, "--epochs", 1]) == 0
    run = tmp_path / "runs" / "exp1"
    log = (run / "train.log").read_text()
    assert "loaded 294/294 tensors" in log and "aux_weight=0.5, schedule=poly" in log
    assert run_cli(["train", "--resume", run / "last.ckpt", "--epochs", 2]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and 0 < float(rows[-1]["val_miou"]) <= 1
    state = torch.load(run / "best.ckpt", weights_only=True)
    assert state["task"] == "segmentation" and state["labels"]["void"] == 11 and len(state["classes"]) == 11
    assert state["preprocessing"]["resize"] == 128 and state["preprocessing"]["crop"] is None
    capsys.readouterr()
    assert run_cli(["eval", run / "best.ckpt", small_camvid, "--workers", 0]) == 0
    out = capsys.readouterr().out
    assert "mean IoU" in out and "Bicyclist" in out and "(4 photos, part val)" in out
    table = (run / "eval-camvid" / "report.txt").read_text()
    assert all(name in table for name in ("Sky", "Road", "Pedestrian"))
    assert (run / "eval-camvid" / "confusion_matrix.csv").read_text().startswith("true \\ predicted,Sky,")
    # eval scores the photos at the run's resize against their full-size masks: close to train's own val
    # (which scores resized masks); a photo pasted into a mask-sized black canvas once made it near chance
    report = json.loads((run / "eval-camvid" / "report.json").read_text())
    best = max(float(r["val_miou"]) for r in rows)  # best.ckpt's
    assert abs(report["miou"] - best) < 0.05, (report["miou"], best)
    assert len(report["worst"]) == 4 and (run / "eval-camvid" / "worst.png").is_file()


@pytest.mark.slow
def test_a_small_camvid_model_predicts_exports_and_serves_the_same_masks(small_camvid, tmp_path, capsys):
    # the whole chain of issue 25 on real photos: train 2 epochs, predict (mask at the photo's 480 x 360),
    # export (verified in pixels), predict from the .onnx, serve; FCN-8s on a quarter-width MobileNetV2
    # exports in seconds where lraspp_efficientnet_lite0 takes over a minute
    from PIL import Image

    from tests.seg_data import TINY_SEG_MODEL

    pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install 'imgcls[export]'")
    fastapi = pytest.importorskip("fastapi.testclient", reason="the serve extra is not installed")
    from imgcls.serve import ServeOptions, open_model
    from imgcls.serve.app import create_app

    assert run_cli(["train", small_camvid, *TINY_SEG_MODEL, "--input-size", 96, "--resize-size", 128, "--epochs", 2,
                    "--batch-size", 4, "--workers", 0, "--no-progress", "--no-tensorboard",
                    "--out-dir", tmp_path / "runs"]) == 0
    ckpt = tmp_path / "runs" / "exp1" / "best.ckpt"
    photo = sorted((small_camvid / "val" / "images").iterdir())[0]
    capsys.readouterr()
    assert run_cli(["predict", ckpt, photo, "--json", "-o", tmp_path / "masks"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    mask = Image.open(tmp_path / "masks" / f"{photo.stem}.png")
    assert mask.size == (480, 360) and mask.mode == "P" and sum(entry["shares"].values()) == pytest.approx(1, abs=1e-6)
    assert run_cli(["export", ckpt, "-o", tmp_path / "camvid.onnx", "--val", small_camvid]) == 0
    report = capsys.readouterr().out
    assert "any height and width" in report and "argmax masks agree on" in report
    assert run_cli(["predict", tmp_path / "camvid.onnx", photo, "--json", "-o", tmp_path / "onnx_masks"]) == 0
    onnx_mask = Image.open(tmp_path / "onnx_masks" / f"{photo.stem}.png")
    agree = (np.asarray(onnx_mask) == np.asarray(mask)).mean()
    assert agree > 0.999, agree  # float rounding may flip a pixel where two classes tie
    with fastapi.TestClient(create_app(open_model(tmp_path / "camvid.onnx", device="cpu"), ServeOptions())) as client:
        assert client.get("/model").json()["task"] == "segmentation"
        r = client.post("/predict", files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))])
    assert r.status_code == 200
    (got,) = r.json()
    assert got["size"] == [480, 360] and got["mask"].startswith("data:image/png;base64,")
