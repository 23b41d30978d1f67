"""Optimizers with sensible parameter groups, and learning-rate schedules evaluated per step.

`LRSchedule` computes the learning rate of step t from a closed formula (linear warm-up, then
step / cosine / one-cycle / constant / poly), so its whole state is one integer and a resumed run
lands on exactly the same rate.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from imgcls.engine.config import OptimConfig
from imgcls.errors import ConfigError


def resolved_lr(cfg: OptimConfig, batch_size: int) -> float:
    if cfg.lr == "find":  # engine.train resolves it (engine.lr_find.with_found_lr) before planning
        raise ConfigError("lr 'find' is the LR range test's suggestion: train with imgcls.engine.train(config) "
                          "(or imgcls train --lr find), or give --lr a number")
    if cfg.lr is not None:
        return cfg.lr
    return 0.1 * batch_size / 256 if cfg.optimizer == "sgd" else 1e-3


def lr_rule(cfg: OptimConfig, batch_size: int, world: int, lr: float) -> str:
    """The log line that says which learning rate the (global) batch got, and why."""
    batch = f"global batch {batch_size * world} ({batch_size} per process x {world} processes)" if world > 1 \
        else f"batch {batch_size}"
    if cfg.lr is not None:
        why = "--lr as given; it is the rate of the global batch, never rescaled" if world > 1 else "--lr as given"
    elif cfg.optimizer == "sgd":
        why = f"linear scaling rule: 0.1 x {batch_size * world}/256"
    else:
        why = "adamw default, independent of the batch"
    return f"{batch}; lr {lr:.4g} ({why})"


def resolved_weight_decay(cfg: OptimConfig) -> float:
    if cfg.weight_decay is not None:
        return cfg.weight_decay
    return 1e-4 if cfg.optimizer == "sgd" else 0.05


def param_groups(named: Iterable[tuple[str, nn.Parameter]], *, lr: float, weight_decay: float,
                 no_decay_norm_bias: bool = True, head_prefix: str | None = None,
                 backbone_lr_mult: float = 1.0) -> list[dict]:
    """Split trainable parameters into (head | backbone) x (decay | no decay) groups.

    Biases and normalisation scales/shifts (every tensor with fewer than 2 dimensions) get no
    weight decay when `no_decay_norm_bias`; parameters outside the classifier (`head_prefix`) get
    `lr * backbone_lr_mult`. Empty groups are dropped; each group keeps its `base_lr`.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        is_head = head_prefix is not None and (name == head_prefix or name.startswith(head_prefix + "."))
        decay = not (no_decay_norm_bias and p.ndim < 2)
        groups.setdefault((is_head or head_prefix is None, decay), []).append(p)
    out = []
    for (is_head, decay), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], not kv[0][1])):
        group_lr = lr if is_head else lr * backbone_lr_mult
        out.append({"params": params, "lr": group_lr, "base_lr": group_lr,
                    "weight_decay": weight_decay if decay else 0.0})
    if not out:
        raise ConfigError("nothing to train: every parameter is frozen (check --transfer)")
    return out


def build_optimizer(cfg: OptimConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=groups[0]["lr"])
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; use sgd or adamw")


class LRSchedule:
    """Sets every group's lr to `base_lr * factor(step)`; call `step()` after each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, kind: str, total_steps: int, steps_per_epoch: int,
                 warmup_steps: int = 0, step_size: int = 30, gamma: float = 0.1) -> None:
        if kind not in ("cosine", "step", "onecycle", "constant", "poly"):
            raise ConfigError(f"unknown schedule {kind!r}; use cosine, step, onecycle, constant or poly")
        self.optimizer, self.kind = optimizer, kind
        self.total = max(1, total_steps)
        self.per_epoch = max(1, steps_per_epoch)
        self.warmup = warmup_steps
        self.step_size, self.gamma = step_size, gamma
        self.t = 0
        self._apply()

    def factor(self, t: int) -> float:
        if self.kind == "onecycle":
            # torchvision/fast.ai shape: 30% linear rise from lr/25, cosine fall to lr/1e4
            rise = max(1, int(0.3 * self.total))
            if t < rise:
                return 1 / 25 + (1 - 1 / 25) * t / rise
            frac = min(1.0, (t - rise) / max(1, self.total - rise))
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * frac))
        if t < self.warmup:
            return (t + 1) / (self.warmup + 1)
        if self.kind == "cosine":
            frac = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
            return 0.5 * (1 + math.cos(math.pi * frac))
        if self.kind == "poly":  # the segmentation references' (DeepLab, torchvision): (1 - t/T)^0.9
            frac = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
            return (1 - frac) ** 0.9
        if self.kind == "step":
            return self.gamma ** (t // (self.step_size * self.per_epoch))
        return 1.0

    def _apply(self) -> None:
        f = self.factor(self.t)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f

    def step(self) -> None:
        self.t += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        self._apply()
