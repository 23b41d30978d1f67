"""The learning-rate range test: its suggestion on a synthetic problem lies in the range where training is
stable, and on a planned run it leaves the model, the data and the run folders as they were."""
import copy
import json
import math

import pytest
import torch
from torch import nn

from imgcls.cli import main
from imgcls.engine import Config, plan, train
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.engine.lr_find import LRFindResult, lr_find, range_test, suggest
from tests.engine.test_trainer import tiny_config


def problem(seed: int = 0, n: int = 2048, d: int = 20, k: int = 4):
    """Gaussian points labelled by a random linear teacher: a logistic regression learns it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * 3
    return x, (x @ torch.randn(d, k, generator=g)).argmax(1)


def batches(x, y, bs: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - bs + 1, bs):
            yield x[order[i:i + bs]], y[order[i:i + bs]]


def loss_of(net, x, y):
    return nn.functional.cross_entropy(net(x), y)


def loss_after(net0, x, y, lr: float, steps: int = 100) -> float:
    """The whole set's loss after `steps` SGD steps at a constant `lr` (inf when it diverged)."""
    net = copy.deepcopy(net0)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    it = batches(x, y)
    for _ in range(steps):
        loss = loss_of(net, *next(it))
        if not math.isfinite(loss.item()):
            return math.inf
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return loss_of(net, x, y).item()


def test_the_suggestion_lies_in_the_stable_range():
    x, y = problem()
    torch.manual_seed(0)
    net0 = nn.Linear(20, 4)
    with torch.no_grad():
        start = loss_of(net0, x, y).item()
    grid = [10 ** (e / 2) for e in range(-8, 5)]
    final = {lr: loss_after(net0, x, y, lr) for lr in grid}
    best = min(final.values())
    stable = [lr for lr, loss in final.items() if loss < min(start, 3 * best)]
    net = copy.deepcopy(net0)
    result = range_test(net, batches(x, y), loss_of, torch.optim.SGD(net.parameters(), lr=1e-5, momentum=0.9),
                        start_lr=1e-5, end_lr=100, steps=100)
    assert "stopped at lr" in result.stopped and len(result.lrs) < 100  # it diverged and stopped early
    assert min(stable) <= result.suggestion <= max(stable), (result.suggestion, final)
    assert result.suggestion == pytest.approx(result.min_lr / 10) and result.steepest < result.min_lr
    assert all(a < b for a, b in zip(result.lrs, result.lrs[1:]))


def test_too_short_a_curve_has_no_suggestion():
    result = suggest(LRFindResult(lrs=[1e-3, 1e-2], losses=[1.0, 0.9], smoothed=[1.0, 0.95], stopped="x"))
    assert result.suggestion is None and "too few steps" in result.to_text()
    lrs = [10.0 ** e for e in range(-7, 1)]
    flat = [1.0, 1.0, 0.995, 1.0, 1.2, 2.0, 5.0, 9.0]  # no descent: the minimum at the start is noise
    result = suggest(LRFindResult(lrs=lrs, losses=flat, smoothed=flat, stopped="x"))
    assert result.suggestion is None and "never fell 2% below its start" in result.to_text()


@pytest.fixture
def tiny_cfg(tiny_folder, tmp_path) -> Config:
    return tiny_config(tiny_folder, tmp_path / "runs", batch_size=4)


def test_lr_find_on_a_plan_leaves_the_model_untouched(tiny_cfg, tmp_path):
    p = plan(tiny_cfg)
    before = {k: v.clone() for k, v in p.model.state_dict().items()}
    rng = torch.get_rng_state()
    result = lr_find(p, start_lr=1e-4, end_lr=10, steps=12)
    assert 1 <= len(result.lrs) <= 12 and result.lrs[0] == pytest.approx(1e-4)
    after = p.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert torch.equal(torch.get_rng_state(), rng)
    assert not (tmp_path / "runs").exists()  # no run folder


def test_cli_lr_find_prints_and_plots_and_writes_nothing_else(tiny_folder, tmp_path, capsys):
    png = tmp_path / "curve.png"
    code = main(["lr-find", str(tiny_folder), "--input-size", "32", "--batch-size", "4", "--workers", "0",
                 "--val-fraction", "0.25", "--out-dir", str(tmp_path / "runs"), "--no-progress",
                 "--steps", "10", "--start-lr", "1e-4", "--plot", str(png), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and png.is_file() and len(out["lrs"]) <= 10 and out["plot"] == str(png)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # a range test of 100 steps, then a run
def test_train_lr_find_trains_at_the_suggestion(tiny_cfg, capsys, caplog):
    tiny_cfg.optim.lr = "find"
    tiny_cfg.train.epochs = 1
    tiny_cfg.data.batch_size = 8  # at batch 4 the toy set's smoothed loss never falls 2%: no suggestion
    with caplog.at_level("INFO", logger="imgcls"):
        result = train(tiny_cfg)
    lr = load_checkpoint(result.run_dir / "last.ckpt")["config"]["optim"]["lr"]
    assert isinstance(lr, float) and lr > 0
    assert any(r.getMessage().startswith("--lr find: suggested lr") for r in caplog.records)
    assert main(["train", "--resume", str(result.run_dir / "last.ckpt"), "--lr", "find"]) == 2
    assert "--lr find picks the rate of a new run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "data", "--lr", "fnd"])
    assert "'fnd' is not a number or find" in capsys.readouterr().err


def test_planning_with_lr_find_unresolved_says_how(tiny_cfg):
    from imgcls.engine.optim import resolved_lr
    from imgcls.errors import ConfigError

    tiny_cfg.optim.lr = "find"
    with pytest.raises(ConfigError, match="lr 'find' is the LR range test's suggestion"):
        resolved_lr(tiny_cfg.optim, 8)
