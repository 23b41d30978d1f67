"""Training a segmentation model through the engine on tiny synthetic masks (no ../shared needed): the run's
files, a checkpoint that describes the task, a bit-exact resume, a classifier's weights in the backbone,
and the settings a segmentation run refuses."""
from __future__ import annotations

import csv

import pytest
import torch

from imgcls.engine import Config, train
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.errors import ConfigError
from tests.conftest import stop_after_step
from tests.seg_data import NAMES, PALETTE, make_seg_folder


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory):
    return make_seg_folder(tmp_path_factory.mktemp("seg") / "data", n_train=4, n_val=2, size=(48, 32))


def seg_config(data, out, **kw) -> Config:
    cfg = Config()
    cfg.data.data, cfg.data.input_size, cfg.data.batch_size, cfg.data.workers = str(data), 32, 2, 0
    cfg.model.model = "lraspp_efficientnet_lite0"
    cfg.train.epochs, cfg.train.out_dir, cfg.train.progress, cfg.train.tensorboard = 2, str(out), False, False
    for k, v in kw.items():
        cfg.set(k, v)
    return cfg


def test_a_segmentation_run_leaves_its_report_and_a_self_describing_checkpoint(seg_folder, tmp_path):
    result = train(seg_config(seg_folder, tmp_path / "runs", class_weights="median-frequency"))
    run = result.run_dir
    for name in ("best.ckpt", "last.ckpt", "metrics.csv", "report.txt", "report.json", "confusion_matrix.csv",
                 "confusion_matrix.png", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_miou" in rows[0] and "val_top1" not in rows[0]
    assert result.best_top1 == pytest.approx(max(float(r["val_miou"]) for r in rows), abs=1e-6)
    ckpt = load_checkpoint(run / "best.ckpt")
    assert ckpt["task"] == "segmentation" and ckpt["classes"] == NAMES
    assert ckpt["labels"] == {"void": 3, "palette": [list(c) for c in PALETTE]}
    assert ckpt["preprocessing"]["crop"] is None and ckpt["preprocessing"]["resize"] == 32  # the photos' own size
    cfg = ckpt["config"]
    assert cfg["train"]["aux_weight"] == 0.5 and cfg["optim"]["schedule"] == "poly"
    report = (run / "report.txt").read_text()
    assert "mean IoU" in report and all(name in report for name in NAMES)
    log = (run / "train.log").read_text()
    assert "class weights (median frequency): a " in log and "best val mean IoU" in log


def test_resume_mid_epoch_gives_the_same_weights(seg_folder, tmp_path, monkeypatch):
    full = train(seg_config(seg_folder, tmp_path / "a", save_every=1))  # 2 steps per epoch, 4 in all
    stop_after_step(monkeypatch, 3, "ctrl-c")
    assert train(seg_config(seg_folder, tmp_path / "b", save_every=1)).interrupted
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    assert (load_checkpoint(last)["epoch"], load_checkpoint(last)["epoch_step"]) == (1, 1)
    resumed = train(seg_config(seg_folder, tmp_path / "b", resume=str(last)))
    a, b = load_checkpoint(full.run_dir / "last.ckpt")["model"], load_checkpoint(resumed.run_dir / "last.ckpt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    want = list(csv.DictReader((full.run_dir / "metrics.csv").open()))
    assert [r["val_miou"] for r in rows] == [r["val_miou"] for r in want]


def test_a_classifiers_weights_load_into_the_backbone(seg_folder, tmp_path):
    from imgcls.models import create_model

    torch.manual_seed(1)
    classifier = create_model("efficientnet_lite0")
    torch.save(classifier.state_dict(), tmp_path / "lite0.pth")
    result = train(seg_config(seg_folder, tmp_path / "runs", weights=str(tmp_path / "lite0.pth"), epochs=1, lr=0.0))
    log = (result.run_dir / "train.log").read_text()
    assert "loaded" in log and "classifier.1.weight" in log
    model = load_checkpoint(result.run_dir / "last.ckpt")["model"]
    assert torch.equal(model["backbone.features.0.0.weight"], classifier.state_dict()["features.0.0.weight"])


@pytest.mark.parametrize("kw, match", [
    ({"mixup": 0.2}, "--mixup: mixes labels of whole images, so it does not apply to segmentation"),
    ({"auto_augment": "trivialaugment"}, "--auto-augment: moves the photo without its mask"),
    ({"cache": True}, "--cache: caches photos without their masks"),
    ({"transfer": "head"}, "--transfer head trains a classifier on cached features"),
    ({"scale": [0.5, 1.0]}, "--scale: is the classifier's crop area"),
    ({"model": "resnet18"}, "photos with masks \\(segmentation\\), but resnet18 is a classification model"),
])
def test_what_a_segmentation_run_refuses(seg_folder, tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        train(seg_config(seg_folder, tmp_path / "runs", **kw))
    assert not (tmp_path / "runs").exists()


def test_a_segmentation_model_on_class_folders_is_refused(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="a class-per-folder set \\(classification\\), but lraspp_efficientnet_lite0 "
                                          "is a segmentation model"):
        train(seg_config(tiny_folder, tmp_path / "runs"))


def test_seg_scale_without_a_segmentation_model_is_refused(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="--seg-scale 0.5 1.0 has no effect without a segmentation model"):
        train(seg_config(tiny_folder, tmp_path / "runs", model="resnet18", seg_scale=[0.5, 1.0]))


def test_voc_layout_with_void_255_and_an_ema(tmp_path):
    from tests.seg_data import make_voc

    data = make_voc(tmp_path / "voc", n_train=4, n_val=2)
    result = train(seg_config(data, tmp_path / "runs", epochs=1, ema_decay=0.9))
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert "ema_val_miou" in rows[0]
    ckpt = load_checkpoint(result.run_dir / "best.ckpt")
    assert len(ckpt["classes"]) == 21 and ckpt["labels"]["void"] == 255 and "model_ema" in ckpt
    report = (result.run_dir / "report.txt").read_text()
    assert "left out of the means (in neither the truth nor the predictions)" in report  # most VOC classes


def test_val_data_is_another_segmentation_folder(seg_folder, tmp_path):
    import shutil

    val = tmp_path / "other_val"
    shutil.copytree(seg_folder / "val", val)
    shutil.copy(seg_folder / "classes.json", val / "classes.json")
    result = train(seg_config(seg_folder, tmp_path / "runs", epochs=1, val_data=str(val), workers=1))
    assert "other_val" in (result.run_dir / "train.log").read_text()
    assert load_checkpoint(result.run_dir / "best.ckpt")["data_files"]["val"][0].endswith("val00.png")


def test_last_transfer_trains_the_head_only(seg_folder, tmp_path):
    from imgcls.models import create_model

    result = train(seg_config(seg_folder, tmp_path / "runs", epochs=1, transfer="last:classifier"))
    groups = load_checkpoint(result.run_dir / "last.ckpt")["optimizer"]["param_groups"]
    head = list(create_model("lraspp_efficientnet_lite0", num_classes=3).classifier.parameters())
    assert sum(len(g["params"]) for g in groups) == len(head)
