"""Several labels per photo end to end on a generated CSV of tiny photos (tests/multilabel_data.py): train
(sigmoid + BCE, mixup of multi-hot targets, cached features), the per-class thresholds in best.ckpt, eval,
predict, Grad-CAM per label and the ONNX metadata, a bit-exact resume, and what a multi-label run refuses."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from imgcls.data.table import CsvColumns
from imgcls.engine import Config, train
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.engine.config import DataConfig
from imgcls.engine.recipes import BatchMixer
from imgcls.errors import ConfigError
from tests.conftest import run_cli, stop_after_step
from tests.multilabel_data import make_multilabel_csv


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return make_multilabel_csv(tmp_path_factory.mktemp("ml"), n=24)


def ml_config(labels, out, **kw) -> Config:
    cfg = Config()
    cfg.data.data, cfg.data.images, cfg.data.label_sep = str(labels), str(labels.parent / "images"), ";"
    cfg.data.input_size, cfg.data.batch_size, cfg.data.workers = 32, 8, 0
    cfg.model.model = "resnet18"
    cfg.train.epochs, cfg.train.out_dir, cfg.train.progress, cfg.train.tensorboard = 2, str(out), False, False
    for k, v in kw.items():
        cfg.set(k, v)
    return cfg


def test_mixup_and_cutmix_mix_multi_hot_targets_as_they_mix_the_photos():
    d = DataConfig(mixup=0.4)
    x = torch.rand(4, 3, 8, 8)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]).float()
    mixed_x, mixed_y = BatchMixer(d, seed=0, num_classes=3)(x.clone(), y, epoch=0, step=1)
    lam = float((mixed_x[0] - x[3]).flatten()[0] / (x[0] - x[3]).flatten()[0])  # image 0 mixed with image 3
    assert mixed_y == pytest.approx(lam * y + (1 - lam) * y.roll(1, 0), abs=1e-5) and 0 < lam < 1
    cut_x, cut_y = BatchMixer(DataConfig(cutmix=1.0), seed=0, num_classes=3)(x.clone(), y, epoch=0, step=1)
    kept = float((cut_x == x).all(1).float().mean((1, 2))[0])  # the share of image 0 not pasted over
    assert cut_y[0] == pytest.approx(kept * y[0] + (1 - kept) * y[3], abs=1e-5)


@pytest.fixture(scope="module")
def ml_run(labels, tmp_path_factory):
    return train(ml_config(labels, tmp_path_factory.mktemp("ml_runs"), mixup=0.2, pos_weight="balanced"))


def test_train_eval_predict_cam_and_export_use_the_per_class_thresholds(labels, ml_run, tmp_path, capsys):
    result = ml_run
    run = result.run_dir
    for name in ("best.ckpt", "last.ckpt", "metrics.csv", "report.txt", "report.json", "curves.png", "ap.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"val_map", "val_map_micro", "val_f1", "val_subset_acc"} <= set(rows[0]) and "val_top1" not in rows[0]
    assert result.score == "val mAP" and result.best_top1 == pytest.approx(max(float(r["val_map"]) for r in rows),
                                                                            abs=1e-6)
    log = (run / "train.log").read_text()
    assert "positive weights (negatives/positives in the train part, --pos-weight): blue " in log
    assert "per-class thresholds (the F1-maximising one of each class on 6 val photos)" in log
    ckpt = load_checkpoint(run / "best.ckpt")
    thresholds = ckpt["calibration"]["thresholds"]
    assert ckpt["task"] == "multilabel" and ckpt["classes"] == ["blue", "green", "red"] and len(thresholds) == 3
    assert ckpt["config"]["train"]["metric"] == "map"
    trained = json.loads((run / "report.json").read_text())

    images = labels.parent / "images"
    assert run_cli(["eval", run / "best.ckpt", labels, "--images", images, "--label-sep", ";", "--part", "val",
                    "-o", tmp_path / "eval", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "AP   thresh       F1" in out and "(stored with the model)" in out
    evaluated = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert evaluated["map"] == pytest.approx(trained["map"], abs=1e-6)  # the same photos, the same weights
    assert [c["threshold"] for c in evaluated["per_class"]] == pytest.approx(thresholds)
    assert evaluated["f1"] == pytest.approx(trained["f1"], abs=1e-6)  # thresholds chosen on val, applied to val

    photos = sorted(images.glob("*.png"))[:4]
    assert run_cli(["predict", run / "best.ckpt", *photos, "--json", "--device", "cpu"]) == 0
    preds = json.loads(capsys.readouterr().out)
    from imgcls.inference import Predictor

    probs = Predictor.load(run / "best.ckpt", device="cpu").probabilities(
        Predictor.load(run / "best.ckpt", device="cpu").logits_of_dataset(_photos(run, photos)))
    for p, row in zip(preds, probs):
        above = [c for c, name in enumerate(ckpt["classes"]) if row[c] >= thresholds[c]]
        assert sorted(lab["index"] for lab in p["labels"]) == above
        assert p["answer"] == [lab["label"] for lab in p["labels"]]
        assert all(lab["prob"] >= lab["threshold"] for lab in p["labels"])
        assert [lab["prob"] for lab in p["labels"]] == sorted((lab["prob"] for lab in p["labels"]), reverse=True)
    assert run_cli(["predict", run / "best.ckpt", photos[0], "--device", "cpu"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{photos[0]}: ") and ("%" in line or "no label above its threshold" in line)

    assert run_cli(["cam", run / "best.ckpt", photos[0], "-o", tmp_path / "cam", "--save-npy", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    shown = preds[0]["answer"] or [ckpt["classes"][int(probs[0].argmax())]]
    assert f"(Grad-CAM of {', '.join(shown)})" in said
    maps = np.load(tmp_path / "cam" / f"{photos[0].stem}.cam.npy")  # one map per label explained
    assert maps.shape[0] == len(shown) if len(shown) > 1 else maps.ndim == 2

    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    onnx = tmp_path / "model.onnx"
    assert run_cli(["export", run / "best.ckpt", "-o", onnx, "--val", images]) == 0
    capsys.readouterr()
    from imgcls.inference.source import open_source

    source = open_source(onnx)
    assert source.task == "multilabel" and source.calibration.thresholds == pytest.approx(tuple(thresholds))
    assert run_cli(["predict", onnx, *photos, "--json"]) == 0
    assert [p["answer"] for p in json.loads(capsys.readouterr().out)] == [p["answer"] for p in preds]
    assert run_cli(["export", run / "best.ckpt", "-o", tmp_path / "q.onnx", "--int8", "--calib", images]) == 2


def test_serve_lists_every_label_above_its_threshold(labels, ml_run):
    from imgcls.serve import open_model

    service = open_model(ml_run.run_dir / "best.ckpt", device="cpu")
    card = service.card()
    thresholds = load_checkpoint(ml_run.run_dir / "best.ckpt")["calibration"]["thresholds"]
    assert card["task"] == "multilabel" and card["thresholds"] == pytest.approx(thresholds)
    photo = sorted((labels.parent / "images").glob("*.png"))[0]
    plain, with_cam = (service.predict([(photo.name, photo.read_bytes())], cam=cam)[0] for cam in (False, True))
    assert plain.keys() == {"path", "error", "answer", "labels"} and plain["answer"] == with_cam["answer"]
    assert all(lab["prob"] >= lab["threshold"] for lab in plain["labels"])
    shown = plain["answer"] or [card["classes"][0]]  # no label found: the most probable class is explained
    assert with_cam["cam"]["png"].startswith("data:image/png;base64,")
    assert len(with_cam["cam"]["class"].split(", ")) == len(shown)
    assert not plain["answer"] or with_cam["cam"]["class"] == ", ".join(shown)


def _photos(run, photos):
    from imgcls.data import Preprocessing
    from imgcls.data.dataset import ImageFolder

    pre = Preprocessing.from_dict(load_checkpoint(run / "best.ckpt")["preprocessing"], where=run, fix="")
    return ImageFolder(run, pre.eval_transform(), samples=[(p, 0) for p in photos], classes=["x"])


def test_head_on_cached_features_of_the_whole_photo_then_a_fine_tune(labels, tmp_path):
    """The benchmark's two stages (benchmarks/multilabel_camvid.py) on tiny photos: a head on cached features of
    the whole photo, then the whole network fine-tuned from its best.ckpt on whole photos, flipped and mixed."""
    head = train(ml_config(labels, tmp_path / "runs", transfer="head", whole_photo=True, resize_size=36,
                           optimizer="adamw", lr=1e-2, name="head"))
    ckpt = load_checkpoint(head.run_dir / "best.ckpt")
    assert ckpt["preprocessing"]["crop"] is None and ckpt["preprocessing"]["resize"] == 36
    assert "cached backbone features: 18 train" in (head.run_dir / "train.log").read_text()
    assert len(ckpt["calibration"]["thresholds"]) == 3
    tuned = train(ml_config(labels, tmp_path / "runs", weights=str(head.run_dir / "best.ckpt"), whole_photo=True,
                            resize_size=36, mixup=0.2, epochs=1, name="tuned"))
    log = (tuned.run_dir / "train.log").read_text()
    assert "loaded" in log and "per-class thresholds" in log
    photo = sorted((labels.parent / "images").glob("*.png"))[0]
    from imgcls.inference import Predictor

    pred = Predictor.load(tuned.run_dir / "best.ckpt", device="cpu").predict(photo)[0]
    assert pred.multilabel and pred.error is None


def test_resume_mid_epoch_gives_the_same_weights(labels, tmp_path, monkeypatch):
    full = train(ml_config(labels, tmp_path / "a", save_every=1, mixup=0.2))  # 2 steps per epoch, 4 in all
    stop_after_step(monkeypatch, 3, "ctrl-c")
    assert train(ml_config(labels, tmp_path / "b", save_every=1, mixup=0.2)).interrupted
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    resumed = train(ml_config(labels, tmp_path / "b", resume=str(last)))
    a, b = load_checkpoint(full.run_dir / "last.ckpt")["model"], load_checkpoint(resumed.run_dir / "last.ckpt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    assert [r["val_map"] for r in rows] == [r["val_map"] for r in csv.DictReader((full.run_dir / "metrics.csv").open())]


@pytest.mark.parametrize("kw, match", [
    ({"sampler": "balanced"}, "--sampler balanced draws photos by their one class"),
    ({"class_weights": "balanced"}, "--class-weights balanced weighs one class per photo; for several labels per "
                                    "photo use --pos-weight balanced"),
    ({"metric": "macro_f1"}, "--metric macro_f1: a multi-label run picks best.ckpt by macro mAP"),
])
def test_what_a_multi_label_run_refuses(labels, tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        train(ml_config(labels, tmp_path / "runs", **kw))
    assert not (tmp_path / "runs").exists()


def test_multi_label_flags_on_single_label_data_are_refused(tiny_folder, tmp_path):
    for kw, match in (({"pos_weight": "balanced"}, "--pos-weight balanced applies to multi-label data"),
                      ({"metric": "map"}, "--metric map applies to multi-label data")):
        cfg = Config()
        cfg.data.data, cfg.data.input_size, cfg.data.workers, cfg.train.out_dir = str(tiny_folder), 32, 0, str(tmp_path)
        for k, v in kw.items():
            cfg.set(k, v)
        with pytest.raises(ConfigError, match=match):
            train(cfg)
    assert CsvColumns(label_sep=";").given() == ["--label-sep"]
