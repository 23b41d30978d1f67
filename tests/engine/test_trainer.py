"""The training loop on a toy set that the tests make (tests/conftest.make_tiny_folder)."""
import csv

import pytest
import torch

import imgcls
from imgcls.engine import Config, budget, fit, plan, train
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.errors import CheckpointError, DataError
from imgcls.tasks import Classification
from tests.conftest import stop_after_step


def tiny_config(data, out, **train_kw) -> Config:
    cfg = Config()
    cfg.data.data, cfg.data.input_size, cfg.data.batch_size, cfg.data.workers = str(data), 32, 8, 0
    cfg.data.val_fraction = 0.25
    cfg.model.model = "resnet18"
    cfg.train.epochs, cfg.train.out_dir, cfg.train.progress, cfg.train.tensorboard = 2, str(out), False, False
    for k, v in train_kw.items():
        cfg.set(k, v)
    return cfg


def test_a_run_leaves_checkpoints_metrics_plots_and_its_config(tiny_folder, tmp_path):
    result = train(tiny_config(tiny_folder, tmp_path / "runs"))
    run = result.run_dir
    assert run.name == "exp1" and result.epochs_run == 2 and 0 <= result.best_top1 <= 1
    for name in ("best.ckpt", "last.ckpt", "config.json", "metrics.csv", "curves.png", "confusion_matrix.png",
                 "confusion_matrix.csv", "report.json", "train.log"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[0]["train_loss"]) > 0
    ckpt = load_checkpoint(run / "last.ckpt")
    assert ckpt["classes"] == ["class_0", "class_1", "class_2"] and ckpt["epoch"] == 2
    assert ckpt["preprocessing"] == {"resize": 37, "crop": 32, "mean": list(imgcls.engine.config.IMAGENET_MEAN),
                                     "std": list(imgcls.engine.config.IMAGENET_STD), "interpolation": "bilinear"}
    assert Config.load(run / "config.json") == Config.from_dict(ckpt["config"])
    assert train(tiny_config(tiny_folder, tmp_path / "runs", epochs=1)).run_dir.name == "exp2"


def _final_weights(run_dir):
    return load_checkpoint(run_dir / "last.ckpt")["model"]


@pytest.mark.parametrize("how", ["killed", "ctrl-c"])
def test_resume_mid_epoch_gives_the_same_weights(tiny_folder, tmp_path, how, monkeypatch):
    # 27 train images, batch 8, drop_last: 3 steps per epoch, 3 epochs = 9 steps
    cfg = tiny_config(tiny_folder, tmp_path / "a", epochs=3, save_every=2)
    full = train(cfg)
    stop_after_step(monkeypatch, 5, how)
    cfg = tiny_config(tiny_folder, tmp_path / "b", epochs=3, save_every=2)
    if how == "killed":  # the process dies: only the checkpoint of step 4 (epoch 2, step 1) survives
        with pytest.raises(RuntimeError, match="killed"):
            train(cfg)
    else:  # Ctrl-C: the loop saves where it stopped (epoch 2, step 2)
        assert train(cfg).interrupted
    monkeypatch.undo()
    stopped = load_checkpoint(tmp_path / "b" / "exp1" / "last.ckpt")
    assert (stopped["epoch"], stopped["epoch_step"]) == ((1, 1) if how == "killed" else (1, 2))
    # the same settings as the interrupted run: nothing to reconcile (engine.resume)
    resumed = train(tiny_config(tiny_folder, tmp_path / "b", epochs=3, resume=str(tmp_path / "b" / "exp1" / "last.ckpt")))
    assert resumed.run_dir == tmp_path / "b" / "exp1" and resumed.epochs_run == 3
    a, b = _final_weights(full.run_dir), _final_weights(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    want = list(csv.DictReader((full.run_dir / "metrics.csv").open()))
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in want]


def test_resuming_with_another_model_is_refused(tiny_folder, tmp_path):
    run = train(tiny_config(tiny_folder, tmp_path, epochs=1)).run_dir
    cfg = tiny_config(tiny_folder, tmp_path, resume=str(run / "last.ckpt"))
    state = load_checkpoint(run / "last.ckpt")
    state["arch"]["num_classes"] = 7
    torch.save(state, tmp_path / "other.ckpt")
    cfg.train.resume = str(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="is for resnet18 with 7 classes, not resnet18 with 3 classes"):
        plan(cfg)


def test_bad_images_stop_the_run_before_it_starts_unless_skipped(tiny_folder, tmp_path):
    (tiny_folder / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tiny_folder / "class_2" / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"2 unreadable image\(s\).*broken.jpg.*--skip-bad") as e:
        plan(tiny_config(tiny_folder, tmp_path))
    assert "empty.png" in str(e.value)
    p = plan(tiny_config(tiny_folder, tmp_path, skip_bad=True))
    names = {path.name for path, _ in p.data.train.samples + p.data.val.samples}
    assert len(names) > 0 and not {"broken.jpg", "empty.png"} & names


def test_head_training_caches_features_and_leaves_the_backbone_untouched(tiny_folder, tmp_path):
    torch.manual_seed(1)
    pretrained = imgcls.create_model("resnet18", num_classes=1000)
    torch.save(pretrained.state_dict(), tmp_path / "pre.pth")
    for mode, head_keys in (("head", {"fc.weight", "fc.bias"}), ("head+", {"fc.1.weight", "fc.1.bias"})):
        cfg = tiny_config(tiny_folder, tmp_path / mode, weights=str(tmp_path / "pre.pth"), transfer=mode)
        p = plan(cfg)
        if mode == "head":
            assert any("cannot take the pretrained parameters" in note for note in p.notes)
        result = fit(p)
        state = _final_weights(result.run_dir)
        backbone = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("fc.")}
        if mode == "head+":  # the original 1000-way layer stays, frozen, under the new one
            backbone.update({"fc.0.weight": pretrained.fc.weight, "fc.0.bias": pretrained.fc.bias})
        changed = {k for k, v in backbone.items() if not torch.equal(v, state[k])}
        assert changed == set(), f"{mode}: frozen tensors changed: {sorted(changed)[:3]}"
        assert head_keys <= set(state) and result.epochs_run == 2
        log = (result.run_dir / "train.log").read_text()
        assert "cached backbone features: 27 train x 1 view(s)" in log


def test_aux_outputs_are_weighted_in_the_loss():
    crit = torch.nn.CrossEntropyLoss()
    y = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    task = Classification(["a", "b", "c"])
    loss, logits = task.loss((main, aux2, aux1), y, crit, aux_weight=0.3)
    assert logits is main
    assert torch.allclose(loss, crit(main, y) + 0.3 * (crit(aux1, y) + crit(aux2, y)))
    assert task.loss(main, y, crit, aux_weight=0.3)[0] == crit(main, y)


def test_early_stopping(tiny_folder, tmp_path):
    cfg = tiny_config(tiny_folder, tmp_path, epochs=6, patience=1, lr=0.0)
    result = train(cfg)  # lr 0: the val top-1 never improves after epoch 1
    assert result.stopped_early and result.epochs_run == 2


def test_a_named_run_folder_is_never_overwritten(tiny_folder, tmp_path):
    train(tiny_config(tiny_folder, tmp_path, epochs=1, name="mine"))
    with pytest.raises(imgcls.ConfigError, match="exists and is not empty"):
        plan(tiny_config(tiny_folder, tmp_path, epochs=1, name="mine"))  # before any work


@pytest.mark.parametrize("views", [0, 2])
def test_head_with_augmented_views_or_without_a_cache(tiny_folder, tmp_path, views):
    torch.manual_seed(2)
    pretrained = imgcls.create_model("resnet18", num_classes=1000)
    torch.save(pretrained.state_dict(), tmp_path / "pre.pth")
    cfg = tiny_config(tiny_folder, tmp_path / "runs", weights=str(tmp_path / "pre.pth"), transfer="head",
                      feature_views=views)
    result = train(cfg)
    state = _final_weights(result.run_dir)
    assert all(torch.equal(v, state[k]) for k, v in pretrained.state_dict().items() if not k.startswith("fc."))
    log = (result.run_dir / "train.log").read_text()
    assert ("cached backbone features: 27 train x 2 view(s)" in log) == (views == 2)
    assert ("cached backbone features" in log) == (views > 0)


def test_googlenet_trains_with_its_auxiliary_heads(tiny_folder, tmp_path, monkeypatch):
    from imgcls.engine import loop

    size = max(imgcls.create_model("googlenet", num_classes=3).min_input_size)
    cfg = tiny_config(tiny_folder, tmp_path, epochs=1, model="googlenet", input_size=size)
    seen, original = [], loop.train_step

    def step(net, x, *a, **k):
        seen.append(type(net(x)).__name__)
        return original(net, x, *a, **k)

    monkeypatch.setattr(loop, "train_step", step)
    result = train(cfg)
    assert seen and seen[0] == "GoogLeNetOutputs" and result.epochs_run == 1
    state = _final_weights(result.run_dir)
    assert state["aux1.fc2.weight"].shape[0] == 3


def test_head_on_cached_features_resumes_bit_exactly(tiny_folder, tmp_path, monkeypatch):
    torch.manual_seed(3)
    pretrained = imgcls.create_model("resnet18", num_classes=1000)
    torch.save(pretrained.state_dict(), tmp_path / "pre.pth")
    kw = dict(epochs=3, save_every=2, weights=str(tmp_path / "pre.pth"), transfer="head", feature_views=2)
    state = _final_weights(train(tiny_config(tiny_folder, tmp_path / "a", **kw)).run_dir)
    # killed after step 5: the checkpoint of step 4 (epoch 2, step 1) survives; the resumed run makes its
    # cache again from the checkpoint's weights and ends with the same weights
    stop_after_step(monkeypatch, 5, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(tiny_folder, tmp_path / "b", **kw))
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    b = _final_weights(train(tiny_config(tiny_folder, tmp_path / "b", **kw, resume=str(last))).run_dir)
    assert state.keys() == b.keys() and all(torch.equal(state[k], b[k]) for k in state)


def test_last_trains_its_tail_on_cached_maps_and_resumes_bit_exactly(tiny_folder, tmp_path, monkeypatch):
    torch.manual_seed(3)
    pretrained = imgcls.create_model("resnet18", num_classes=1000)
    torch.save(pretrained.state_dict(), tmp_path / "pre.pth")
    kw = dict(epochs=3, save_every=2, weights=str(tmp_path / "pre.pth"), transfer="last:layer4,fc",
              feature_views=2, ema_decay=0.9)  # the EMA's tail is validated too
    full = train(tiny_config(tiny_folder, tmp_path / "a", **kw))
    state = _final_weights(full.run_dir)
    log = (full.run_dir / "train.log").read_text()
    assert ("cached frozen maps (conv1 .. layer3 run once per image; --feature-views 0 runs them every step): "
            "27 train x 2 view(s) + 9 val, 256 x 2 x 2 each, ") in log
    assert "each map flipped with probability 0.5 (--no-map-flip)" in log
    # the tail trained on layer3's maps; the checkpoint holds the whole network, its frozen part untouched
    assert state.keys() == pretrained.state_dict().keys()
    frozen = {k: v for k, v in pretrained.state_dict().items() if not k.startswith(("layer4.", "fc."))}
    assert all(torch.equal(v, state[k]) for k, v in frozen.items())
    assert not torch.equal(state["layer4.0.conv1.weight"], pretrained.state_dict()["layer4.0.conv1.weight"])
    # killed after step 5: the checkpoint of step 4 (epoch 2, step 1) survives, and the resumed run ends
    # with the same weights: the cache is made again from the checkpoint's weights, the map flips are drawn
    # from (seed, epoch, sample)
    stop_after_step(monkeypatch, 5, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(tiny_folder, tmp_path / "b", **kw))
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    resumed = train(tiny_config(tiny_folder, tmp_path / "b", **kw, resume=str(last)))
    b = _final_weights(resumed.run_dir)
    assert state.keys() == b.keys() and all(torch.equal(state[k], b[k]) for k in state)
    ema = load_checkpoint(resumed.run_dir / "last.ckpt")["model_ema"]
    assert all(torch.equal(ema[k], v) for k, v in load_checkpoint(full.run_dir / "last.ckpt")["model_ema"].items())


def test_last_trains_on_images_where_its_maps_cannot_stand_in(tiny_folder, tmp_path, monkeypatch):
    # layer4.0's relu runs on both sides of layer4.0.conv2: no frozen prefix whose map is all the rest reads
    cfg = tiny_config(tiny_folder, tmp_path, transfer="last:layer4.0.conv2,layer4.0.bn2,layer4.1,fc")
    p = plan(cfg)
    assert p.split is None and p.config.data.feature_views == 0
    assert any("training on images, the frozen part runs every step (its output maps cannot stand in for the "
               "images: layer4.0.relu runs both before and after layer4.0.conv2)" in note for note in p.notes)
    cfg.data.feature_views = 1  # asked for: refused
    with pytest.raises(imgcls.ConfigError, match=r"^--feature-views 1: --transfer last:layer4.0.conv2,.* cannot "
                                                 r"train on cached maps of its frozen part: layer4.0.relu runs .*; "
                                                 r"use --feature-views 0"):
        plan(cfg)
    # an image-only recipe: images unless the cache was asked for (then Config.validate refuses)
    p = plan(tiny_config(tiny_folder, tmp_path, transfer="last:layer4,fc", mixup=0.2))
    assert p.split is None and any("(not on cached maps: --mixup works on images)" in note for note in p.notes)
    with pytest.raises(imgcls.ConfigError, match="--mixup works on images, but --transfer last:layer4,fc trains "
                                                 "on cached maps; add --feature-views 0"):
        plan(tiny_config(tiny_folder, tmp_path, transfer="last:layer4,fc", mixup=0.2, feature_views=1))
    p = plan(tiny_config(tiny_folder, tmp_path, transfer="last:layer4,fc"))
    assert p.split is not None and p.config.data.feature_views == 1  # resolved: config.json says what ran
    # maps beyond the memory (not the training step): images, unless the cache was asked for
    monkeypatch.setattr(budget, "_device_memory", lambda device, processes: None)
    monkeypatch.setattr(budget, "available_memory", lambda: 1e4)
    p = plan(tiny_config(tiny_folder, tmp_path, transfer="last:layer4,fc"))
    assert p.split is None and any("(not on cached maps: --feature-views 1: caching 1 view(s) of 27 training images "
                                   "as 256 x 2 x 2 float16 maps needs about" in note for note in p.notes)
    with pytest.raises(imgcls.ConfigError, match="^--feature-views 1: caching 1 view"):
        plan(tiny_config(tiny_folder, tmp_path, transfer="last:layer4,fc", feature_views=1))
