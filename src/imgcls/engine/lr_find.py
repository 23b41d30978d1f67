"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"; the
fastai finder): train from the run's starting weights for a bounded number of steps while the learning
rate grows exponentially from `start_lr` to `end_lr`, follow the exponentially smoothed loss, stop once it
diverges, and suggest a rate from the curve.

The rule: the rate at the smoothed loss's minimum, divided by 10 (at the minimum the loss is already about
to blow up; a tenth of it still descends fast). The steepest descent of the smoothed loss is reported beside
it. `lr_find(plan)` shares everything with training through the plan (data, model, weights, transfer
policy, cached features or maps, optimizer groups, precision) and leaves the model, the data and every
run folder as they were: the weights and the random state are restored afterwards, nothing is written.
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.engine.optim import build_optimizer, param_groups, resolved_weight_decay
from imgcls.engine.config import Config
from imgcls.engine.plan import Plan, plan
from imgcls.errors import ConfigError, TrainingError
from imgcls.progress import show_progress

log = logging.getLogger("imgcls")

RULE = "min/10: a tenth of the rate at the smoothed loss's minimum"
NO_RESUME = "lr-find starts from the run's initial weights; it does not take --resume"


@dataclass
class LRFindResult:
    """The curve (rate and raw and smoothed loss per step), why it stopped, and the suggestion."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stopped: str = ""
    suggestion: float | None = None
    min_lr: float | None = None
    steepest: float | None = None
    rule: str = RULE

    def to_text(self) -> str:
        if self.suggestion is None:
            return f"lr-find: no suggestion ({self.stopped})"
        return (f"suggested lr {self.suggestion:.3g} ({self.rule}; smoothed loss lowest at {self.min_lr:.3g}, "
                f"steepest descent at {self.steepest:.3g}); {len(self.lrs)} steps, {self.stopped}")

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "rule": self.rule, "min_lr": self.min_lr,
                "steepest": self.steepest, "stopped": self.stopped, "lrs": self.lrs, "losses": self.losses,
                "smoothed": self.smoothed}

    def plot(self, path: str | Path) -> Path:
        from imgcls.reports.plots import plot_lr_find

        return plot_lr_find(self.lrs, self.losses, self.smoothed, path, suggestion=self.suggestion,
                            title=f"suggested lr {self.suggestion:.3g} ({self.rule.split(':')[0]})"
                            if self.suggestion else "no suggestion")


def suggest(result: LRFindResult, *, skip: float = 0.1, min_drop: float = 0.02) -> LRFindResult:
    """Fill in the suggestion (min/10), the minimum and the steepest descent of the smoothed curve
    (`skip`: the first share of the points, where the smoothing has little history, is not a candidate;
    a curve whose minimum is not `min_drop` below its start has no suggestion)."""
    lrs, s = result.lrs, result.smoothed
    first = min(int(len(s) * skip), max(0, len(s) - 2))
    if len(s) - first < 3:
        result.stopped += "; too few steps to read the curve: raise --steps or lower --start-lr"
        return result
    best = min(range(first, len(s)), key=lambda i: s[i])
    if s[best] > (1 - min_drop) * s[first]:  # a minimum at the start is noise, not a descent
        result.stopped += (f"; the smoothed loss never fell {min_drop:.0%} below its start: no rate to suggest "
                           "(raise --steps, or --start-lr)")
        return result
    result.min_lr = lrs[best]
    result.suggestion = lrs[best] / 10
    slopes = [(s[i + 1] - s[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(first + 1, best)]
    result.steepest = lrs[first + 1 + min(range(len(slopes)), key=slopes.__getitem__)] if slopes else lrs[best]
    return result


def range_test(net: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
               loss_of: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
               optimizer: torch.optim.Optimizer, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
               beta: float = 0.98, diverge: float = 4.0, clip_grad: float | None = None,
               scaler: torch.amp.GradScaler | None = None, progress: bool = False) -> LRFindResult:
    """Train `net` for at most `steps` batches at rates growing geometrically from `start_lr` to `end_lr` (each
    of the optimizer's groups at its share of the largest group's lr: --backbone-lr-mult is kept), the
    loss smoothed with `beta` (bias-corrected); stops when the loss is not finite or the smoothed loss
    exceeds `diverge` times its minimum. Changes `net`: lr_find restores it."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"--start-lr {start_lr:g} --end-lr {end_lr:g}: need 0 < start < end")
    top = max(g["lr"] for g in optimizer.param_groups)
    shares = [g["lr"] / top for g in optimizer.param_groups]
    result, avg, best = LRFindResult(), 0.0, math.inf
    bar = show_progress(steps, desc="lr range test", enabled=progress)
    for i in range(steps):
        x, y = next(batches)
        lr = start_lr * (end_lr / start_lr) ** (i / max(1, steps - 1))
        for g, share in zip(optimizer.param_groups, shares):
            g["lr"] = lr * share
        loss = loss_of(net, x, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            result.stopped = f"stopped at lr {lr:.3g}: the loss became {value}"
            break
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        result.lrs.append(lr), result.losses.append(value), result.smoothed.append(smooth)
        best = min(best, smooth)
        if i > 0 and smooth > diverge * best:
            result.stopped = f"stopped at lr {lr:.3g}: the smoothed loss passed {diverge:g}x its minimum"
            break
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if clip_grad:
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        bar.update(1)
    bar.close()
    result.stopped = result.stopped or f"reached lr {result.lrs[-1]:.3g} (--end-lr) without diverging"
    return suggest(result)


def endless(batches: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A run's train batches, epoch after epoch (the order of epochs 0, 1, ...)."""
    epoch = 0
    while True:
        yield from batches.epoch(epoch, 0)
        epoch += 1


def lr_find(p: Plan, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            progress: bool = False) -> LRFindResult:
    """The range test on the run `p` plans: its train batches (images, head's cached features or last:'s
    cached maps), its network and trainable parameters, its optimizer's groups and precision; the model's
    weights and buffers and torch's random state are restored afterwards."""
    from imgcls.engine.sources import batches

    if not 0 < start_lr < end_lr:
        raise ConfigError(f"--start-lr {start_lr:g} --end-lr {end_lr:g}: need 0 < start < end")
    if p.resume is not None:
        raise ConfigError(NO_RESUME)
    if p.dist.world > 1:
        raise ConfigError("lr-find runs in one process; run it without torchrun")
    cfg, model = p.config, p.model
    saved, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
    try:
        net, train_b, _ = batches(p)
        groups = param_groups(model.named_parameters(), lr=start_lr, weight_decay=resolved_weight_decay(cfg.optim),
                              no_decay_norm_bias=not cfg.optim.decay_norm_bias, head_prefix=p.policy.head_name(model),
                              backbone_lr_mult=cfg.model.backbone_lr_mult)
        optimizer = build_optimizer(cfg.optim, groups)
        if net is model:
            p.policy.set_train_mode(model)  # frozen BatchNorm stays in eval mode
        else:
            net.train()
        criterion = p.task.criterion(label_smoothing=cfg.optim.label_smoothing)
        amp = p.amp_dtype

        def loss_of(n: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                return p.task.loss(n(x), y, criterion, aux_weight=cfg.train.aux_weight)[0]

        scaler = torch.amp.GradScaler(p.device.type) if amp == torch.float16 else None
        return range_test(net, endless(train_b), loss_of, optimizer, start_lr=start_lr, end_lr=end_lr, steps=steps,
                          clip_grad=cfg.optim.clip_grad, scaler=scaler, progress=progress)
    finally:
        model.load_state_dict(saved)
        torch.set_rng_state(rng)


def with_found_lr(config: Config, *, given: set[str] | None = None) -> Config:
    """`train --lr find`: the config with --lr set to the range test's suggestion on the run it describes
    (planned once for the test, from the same initial weights the run starts from)."""
    if config.train.resume:
        raise ConfigError("--lr find picks the rate of a new run; a --resume continues with its checkpoint's rate")
    cfg = copy.deepcopy(config)
    cfg.optim.lr = None
    result = lr_find(plan(cfg, given=given), progress=cfg.train.progress)
    if result.suggestion is None:
        raise TrainingError(f"--lr find: {result.to_text()}; give --lr a value")
    log.info("--lr find: %s", result.to_text())
    cfg.optim.lr = float(f"{result.suggestion:.3g}")
    return cfg
