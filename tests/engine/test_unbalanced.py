"""Training on unbalanced classes: --class-weights, --sampler balanced, --metric (issue 26)."""
import csv

import pytest
import torch

from imgcls.data.balance import BalancedSampler
from imgcls.engine import plan, train
from imgcls.engine.batches import FeatureBatches
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.engine.sources import batches
from tests.conftest import make_tiny_folder, stop_after_step
from tests.engine.test_trainer import tiny_config


@pytest.fixture
def unbalanced(tmp_path):
    """3 classes: 12, 12 and 4 images (the small class keeps 3 for training, 1 for validation)."""
    root = make_tiny_folder(tmp_path / "unbalanced")
    for path in sorted((root / "class_2").iterdir())[4:]:
        path.unlink()
    return root


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.ckpt")["model"]


def test_balanced_sampler_and_class_weights_resume_mid_epoch_bit_exact(unbalanced, tmp_path, monkeypatch):
    kw = dict(epochs=3, save_every=2, batch_size=4, sampler="balanced", class_weights="balanced")  # 5 steps an epoch
    full = train(tiny_config(unbalanced, tmp_path / "a", **kw))
    log = (full.run_dir / "train.log").read_text()
    assert "class weights balanced (1/n), mean 1: class_0 (9) 0.6, class_1 (9) 0.6, class_2 (3) 1.8" in log
    stop_after_step(monkeypatch, 7, "killed")  # step 6 (epoch 2, step 1) was saved
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(unbalanced, tmp_path / "b", **kw))
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    assert (load_checkpoint(last)["epoch"], load_checkpoint(last)["epoch_step"]) == (1, 1)
    resumed = train(tiny_config(unbalanced, tmp_path / "b", resume=str(last), **kw))
    a, b = _weights(full.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = train(tiny_config(unbalanced, tmp_path / "plain", epochs=3, batch_size=4))  # the remedies changed the run
    assert not all(torch.equal(a[k], v) for k, v in _weights(plain.run_dir).items())


def test_the_sampler_reaches_the_batches_of_images_and_of_cached_features(unbalanced, tmp_path):
    _, train_b, val_b = batches(plan(tiny_config(unbalanced, tmp_path, sampler="balanced")))
    assert isinstance(train_b.sampler, BalancedSampler) and not isinstance(val_b.sampler, BalancedSampler)
    feats, targets = torch.randn(2, 20, 4), torch.tensor([0] * 16 + [1] * 4)
    fb = FeatureBatches(feats, targets, batch_size=4, seed=0, train=True, device=torch.device("cpu"), balanced=True)
    epoch = list(fb.epoch(1))
    assert isinstance(fb.sampler, BalancedSampler) and len(epoch) == 5
    assert [torch.equal(x, y) for (x, _), (y, _) in zip(list(fb.epoch(1, start_step=2)), epoch[2:])] == [True] * 3
    assert 6 <= int(torch.cat([t for _, t in epoch]).sum()) <= 14  # class 1: a fifth of the set, half the draws


def test_metric_picks_best_ckpt_and_the_columns_are_in_metrics_csv(unbalanced, tmp_path):
    result = train(tiny_config(unbalanced, tmp_path, epochs=3, metric="macro_f1", class_weights="effective",
                               class_weights_beta=0.9))
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert {"val_balanced_acc", "val_macro_f1", "val_recall_class_2"} <= set(rows[0])
    f1 = [float(r["val_macro_f1"]) for r in rows]
    best = load_checkpoint(result.run_dir / "best.ckpt")
    assert best["best"]["metric"] == "val_macro_f1" and best["epoch"] == result.best_epoch
    assert result.best_epoch == f1.index(max(f1)) + 1 and best["best"]["score"] == pytest.approx(max(f1), rel=1e-5)
    assert result.best_top1 == pytest.approx(float(rows[result.best_epoch - 1]["val_top1"]), rel=1e-5)
    log = (result.run_dir / "train.log").read_text()
    assert "class weights effective (Cui et al. 2019, beta 0.9: (1-beta)/(1-beta^n))" in log
    assert "(macro_f1 " in log and "--metric chose it" in log
