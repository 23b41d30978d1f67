"""Everything that changes while a run trains, in one object that owns its way into and out of a checkpoint.

`TrainState.start(plan, net, steps_per_epoch)` makes the optimizer (over `net`'s trainable
parameters: the whole model, or its head on cached features), the schedule, the gradient scaler, the
weight EMA and the counters, and restores all of them from the plan's --resume checkpoint. A
checkpoint written from `checkpoint(plan)` at a Position resumes exactly there.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from imgcls.engine import resume
from imgcls.engine.build import preprocessing
from imgcls.engine.callbacks import EarlyStopping
from imgcls.engine.checkpoint import rng_state, set_rng_state
from imgcls.engine.optim import LRSchedule, build_optimizer, param_groups, resolved_lr, resolved_weight_decay
from imgcls.engine.plan import Plan
from imgcls.engine.recipes import ModelEma

log = logging.getLogger("imgcls")


@dataclass(frozen=True)
class Position:
    """Where a run is: the epoch, the steps done in it and their running sums (loss, correct, n).
    A checkpoint written at a Position resumes exactly there."""

    epoch: int
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    stopping: EarlyStopping
    pos: Position = field(default_factory=lambda: Position(0))  # what a Ctrl-C checkpoint holds
    global_step: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    @classmethod
    def start(cls, plan: Plan, net: nn.Module, *, steps_per_epoch: int) -> TrainState:
        """Fresh optimizer, schedule, scaler, EMA and counters; with --resume, everything the checkpoint holds."""
        cfg, model = plan.config, plan.model
        lr = resolved_lr(cfg.optim, cfg.data.batch_size * plan.dist.world)  # the rate of the global batch
        groups = param_groups(model.named_parameters(), lr=lr, weight_decay=resolved_weight_decay(cfg.optim),
                              no_decay_norm_bias=not cfg.optim.decay_norm_bias,
                              head_prefix=plan.policy.head_name(model), backbone_lr_mult=cfg.model.backbone_lr_mult)
        optimizer = build_optimizer(cfg.optim, groups)
        schedule = LRSchedule(optimizer, kind=cfg.optim.schedule, total_steps=steps_per_epoch * cfg.train.epochs,
                              steps_per_epoch=steps_per_epoch,
                              warmup_steps=int(round(cfg.optim.warmup_epochs * steps_per_epoch)),
                              step_size=cfg.optim.step_size, gamma=cfg.optim.gamma)
        scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.amp_dtype == torch.float16)
        ema = ModelEma(model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
        # with an EMA its weights are the ones eval/predict use, so they choose best.ckpt (as timm does)
        score = f"ema_{plan.task.score}" if ema is not None else plan.task.score
        state = cls(model, optimizer, schedule, scaler, ema, EarlyStopping(cfg.train.patience, key=score))
        if plan.resume is not None:
            state.restore(plan)
        return state

    def restore(self, plan: Plan) -> None:
        s, cfg = plan.resume.state, plan.config
        self.model.load_state_dict(s["model"])
        if self.ema is not None:
            self.ema.load_state_dict(s["model_ema"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.schedule.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        self.global_step, self.history = s["global_step"], list(s["history"])
        self.stopping = EarlyStopping(cfg.train.patience, key=self.stopping.key, best=s["best"],
                                      patience_left=s["patience_left"], fresh=False)
        set_rng_state(s["rng"])
        resume.log_schedule_change(s["config"]["train"]["epochs"], cfg.train.epochs, cfg.optim.schedule, self.lr)
        log.info("resuming %s at epoch %d step %d", plan.resume.path, s["epoch"] + 1, s["epoch_step"])
        scale = plan.resume.sums_scale
        self.pos = Position(s["epoch"], s["epoch_step"], {k: v * scale for k, v in s["epoch_sums"].items()})

    def checkpoint(self, plan: Plan, pos: Position | None = None) -> dict[str, Any]:
        """The checkpoint of this state at `pos` (default: the current position): plain tensors and
        values only, so `torch.load(..., weights_only=True)` reads it."""
        pos = self.pos if pos is None else pos
        cfg = plan.config
        return {"arch": plan.arch, "model": self.model.state_dict(), "classes": list(plan.task.classes),
                **plan.task.record(),  # "task" (and a segmentation run's void and palette: "labels")
                "preprocessing": preprocessing(cfg.data, dense=plan.task.name == "segmentation").to_dict(),
                "config": cfg.to_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": pos.epoch, "epoch_step": pos.step,
                "global_step": self.global_step, "epoch_sums": dict(pos.sums), "rng": rng_state(),
                **self.stopping.state(), "history": list(self.history), "threads": torch.get_num_threads(),
                "data_files": plan.data_files, "world_size": plan.dist.world,
                **({"model_ema": self.ema.state_dict()} if self.ema is not None else {})}
