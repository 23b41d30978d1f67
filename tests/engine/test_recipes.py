"""engine/recipes.py: mixup/cutmix, progressive resizing and the model EMA, alone and in a run."""
import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.checkpoint import load_model
from imgcls.engine import Config, plan, train
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.engine.recipes import (BatchMixer, ModelEma, parse_progressive, progressive_size, resize_batch,
                                   train_sizes)
from imgcls.errors import ConfigError
from imgcls.tasks import Classification
from tests.conftest import stop_after_step
from tests.engine.test_trainer import tiny_config


def _mixer(**kw) -> BatchMixer:
    cfg = Config().data
    for k, v in kw.items():
        setattr(cfg, k, v)
    return BatchMixer(cfg, seed=0, num_classes=3)


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 8, 8, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


def test_mixup_mixes_each_image_with_its_neighbour_and_the_labels_alike():
    x, y = _batch()
    mixed, target = _mixer(mixup=0.4)(x.clone(), y, epoch=0, step=1)
    lam = float(target[0, 0])  # image 0 is class 0, its neighbour (image 5) class 2
    assert 0 < lam < 1 and target.shape == (6, 3)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    assert torch.allclose(target.sum(1), torch.ones(6)) and float(target[0, 2]) == pytest.approx(1 - lam)
    again, target2 = _mixer(mixup=0.4)(x.clone(), y, epoch=0, step=1)  # a function of (seed, epoch, step)
    assert torch.equal(again, mixed) and torch.equal(target2, target)
    other = _mixer(mixup=0.4)(x.clone(), y, epoch=0, step=2)[1]
    assert not torch.equal(other, target)


def test_cutmix_pastes_a_box_and_weights_the_labels_by_area():
    x, y = _batch()
    found = False
    for step in range(1, 20):
        mixed, target = _mixer(cutmix=1.0)(x.clone(), y, epoch=0, step=step)
        pasted = (mixed != x).any(1)[0]  # where image 0 shows image 5
        lam = float(target[0, 0])
        assert lam == pytest.approx(1 - pasted.float().mean().item())
        if 0 < pasted.sum() < 64:
            rows, cols = pasted.nonzero().unbind(1)
            box = mixed[0, :, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert torch.equal(box, x[5, :, rows.min():rows.max() + 1, cols.min():cols.max() + 1])
            found = True
    assert found


def test_mixing_probability_and_share():
    x, y = _batch()
    out, target = _mixer(mixup=0.2, mix_prob=0.0)(x.clone(), y, epoch=0, step=1)
    assert torch.equal(out, x) and torch.equal(target, y)
    kinds = []
    for step in range(200):
        out, target = _mixer(mixup=0.2, cutmix=1.0, mix_prob=0.5, cutmix_share=0.5)(x.clone(), y, epoch=1, step=step)
        kinds.append("none" if target.ndim == 1 else "cut" if (out == x).any() else "mix")  # cutmix keeps pixels
    assert 70 < kinds.count("none") < 130 and kinds.count("cut") > 30 and kinds.count("mix") > 30


def test_soft_targets_loss_and_accuracy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    hard = torch.tensor([0, 2])
    correct = Classification(["a", "b", "c"]).hits
    assert correct(logits, hard) == 1.0
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    assert correct(logits, soft) == pytest.approx(0.7 + 0.4)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    assert torch.allclose(ce(logits, F.one_hot(hard, 3).float()), ce(logits, hard))


def test_progressive_sizes():
    assert parse_progressive("112:224") == (112, 224)
    for bad in ("224:112", "a:b", "1:2:3", "0:224", "128"):
        with pytest.raises(ConfigError, match="--progressive"):
            parse_progressive(bad)
    sizes = [progressive_size(112, 224, e, epochs=10) for e in range(10)]
    assert sizes[0] == 112 and sizes[-1] == 224 and sizes == sorted(sizes) and all(s % 16 == 0 for s in sizes)
    assert [progressive_size(112, 224, e, epochs=6, stages=2) for e in range(6)] == [112] * 3 + [224] * 3
    cfg = Config()
    cfg.data.progressive, cfg.train.epochs = "128:160", 3
    assert [train_sizes(cfg)(e) for e in range(3)] == [128, 144, 160]
    batch = torch.full((2, 40, 40, 3), 200, dtype=torch.uint8)
    small = resize_batch(batch, 24)
    assert small.shape == (2, 24, 24, 3) and small.dtype == torch.uint8 and bool((small == 200).all())


def test_ema_follows_the_warmed_up_decay():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, 0.9)
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    ema.update(model, updates=0)  # warm-up: d = min(0.9, 1/10) = 0.1
    assert torch.allclose(ema.module[0].weight, 0.1 * w0 + 0.9 * (w0 + 1))
    assert int(ema.module[1].num_batches_tracked) == 5 and not ema.module[0].weight.requires_grad
    before = ema.module[0].weight.clone()
    ema.update(model, updates=1000)  # d = 0.9
    assert torch.allclose(ema.module[0].weight, 0.9 * before + 0.1 * (w0 + 1))


def test_an_ema_run_checkpoints_and_validates_both_weights(tiny_folder, tmp_path):
    result = train(tiny_config(tiny_folder, tmp_path, epochs=1, ema_decay=0.9))
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert {"val_top1", "ema_val_top1", "ema_val_loss"} <= set(rows[0]) and float(rows[0]["ema_val_loss"]) > 0
    ckpt = load_checkpoint(result.run_dir / "best.ckpt")
    assert ckpt["model"].keys() == ckpt["model_ema"].keys()
    assert not torch.equal(ckpt["model"]["fc.weight"], ckpt["model_ema"]["fc.weight"])
    model, _ = load_model(result.run_dir / "best.ckpt")  # eval/predict use the averaged weights
    assert torch.equal(model.state_dict()["fc.weight"], ckpt["model_ema"]["fc.weight"])
    assert result.best_top1 == pytest.approx(float(rows[0]["ema_val_top1"]), abs=1e-6)
    with pytest.raises(ConfigError, match="--ema-decay 0.5 cannot change on --resume"):
        train(tiny_config(tiny_folder, tmp_path, epochs=2, ema_decay=0.5, resume=str(result.run_dir / "last.ckpt")))


def test_resume_is_bit_exact_with_every_recipe_option(tiny_folder, tmp_path, monkeypatch):
    # 27 train images, batch 8: 3 steps per epoch; killed after step 5, resumed from step 4's checkpoint
    recipe = dict(epochs=2, save_every=2, ema_decay=0.9, mixup=0.2, cutmix=1.0, mix_prob=0.8,
                  auto_augment="trivialaugment", random_erasing=0.5, label_smoothing=0.1, warmup_epochs=1.0,
                  progressive="32:40", input_size=40)
    full = train(tiny_config(tiny_folder, tmp_path / "a", **recipe))

    stop_after_step(monkeypatch, 5, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(tiny_folder, tmp_path / "b", **recipe))
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    resumed = train(tiny_config(tiny_folder, tmp_path / "b", **recipe, resume=str(last)))
    a, b = load_checkpoint(full.run_dir / "last.ckpt"), load_checkpoint(resumed.run_dir / "last.ckpt")
    for key in ("model", "model_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_recipe_options_are_checked_before_work(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="--progressive 16:32: 16 px is below resnet18's minimum of 32"):
        train(tiny_config(tiny_folder, tmp_path, progressive="16:32"))
    with pytest.raises(ConfigError, match="--mixup works on images, but --transfer head trains on cached features"):
        train(tiny_config(tiny_folder, tmp_path, transfer="head", mixup=0.2))
    train_config = tiny_config(tiny_folder, tmp_path, transfer="head", mixup=0.2, feature_views=0)
    assert train_config.validate().data.mixup == 0.2  # the backbone runs every step: images to mix
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no run folder


def test_the_layout_is_the_models_preference_unless_given(tiny_folder, tmp_path, monkeypatch):
    from imgcls.models.resnet import ResNet

    assert plan(tiny_config(tiny_folder, tmp_path / "a")).config.model.channels_last is True
    monkeypatch.setattr(ResNet, "channels_last", False)  # a family whose depthwise convs are slower in NHWC
    p = plan(tiny_config(tiny_folder, tmp_path / "b"))
    assert p.config.model.channels_last is False and p.model.conv1.weight.is_contiguous()
    p = plan(tiny_config(tiny_folder, tmp_path / "c", channels_last=True))
    assert p.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_loader_workers_leave_the_cores_to_the_step(monkeypatch):
    from imgcls.data import loader

    for cores, cpu, cuda in ((1, 1, 1), (2, 1, 2), (8, 2, 8), (16, 4, 8)):
        monkeypatch.setattr(loader, "usable_cores", lambda cores=cores: cores)
        assert (loader.train_workers("cpu"), loader.train_workers("cuda")) == (cpu, cuda)
