"""A training run: `train(config)` = `fit(plan(config))`.

`plan` (engine.plan) resolves and checks everything before the run folder exists; `fit` is the loop,
reading top to bottom: the run folder and its log, the batches (images, cached features for head-only
transfer, or cached maps of the frozen prefix for last:), the TrainState, then per epoch
`train_one_epoch`, `evaluate` (and the EMA weights'), the epoch's row, best checkpoint and early
stopping (engine.callbacks), and at the end the task's report of the best weights.

Reproducibility: the seed fixes the initialisation, every epoch's order and every sample's
augmentation (`SeededSampler`/`SeededItems`, independent of the worker count); checkpoints carry
the generator states; on CPU with `deterministic` a run killed mid-epoch and resumed from its last
checkpoint ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.engine import distributed, resume
from imgcls.engine.callbacks import Checkpoints, EpochLog, Quiet
from imgcls.engine.checkpoint import load_checkpoint, save_checkpoint
from imgcls.engine.config import Config
from imgcls.engine.interrupt import STOP
from imgcls.engine.loop import StepRule, epoch_row, evaluate, predict_all, tally_all, train_one_epoch
from imgcls.engine.optim import lr_rule
from imgcls.engine.plan import Plan, plan
from imgcls.engine.run_dir import open_run_dir, run_log
from imgcls.engine.sources import batches
from imgcls.engine.recipes import BatchMixer
from imgcls.engine.state import Position, TrainState
from imgcls.engine.transfer import Tail
from imgcls.errors import TrainingError, summary_of
from imgcls.progress import clock

log = logging.getLogger("imgcls")


@dataclass
class RunResult:
    run_dir: Path
    best_top1: float
    best_epoch: int
    epochs_run: int
    seconds: float
    stopped_early: bool = False
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)
    metric: str = "val_top1"  # the column that chose best.ckpt (--metric; ema_ with an EMA)
    best_score: float = 0.0  # its value at best_epoch
    score: str = "val top-1"  # what best_top1 holds: the task's score (segmentation: val mean IoU)

    def summary_line(self, model: str) -> str:
        how = "stopped early, " if self.stopped_early else ""
        by = "" if self.score != "val top-1" or self.metric.endswith("val_top1") else \
            f" ({self.metric.replace('_val_', ' ').removeprefix('val_')} {self.best_score:.2%}: --metric chose it)"
        return (f"{model}: {self.epochs_run} epochs ({how}{clock(self.seconds)}), best {self.score} "
                f"{self.best_top1:.2%} at epoch {self.best_epoch}{by}; run folder {self.run_dir} "
                f"(best.ckpt, metrics.csv, curves.png, "
                f"{'report.txt, ap.png' if self.score == 'val mAP' else 'confusion_matrix.png'})")


def train(config: Config, *, given: set[str] | None = None) -> RunResult:
    """Train one run as `config` says; returns where it went and how well it did. With
    `config.train.resume`, `given` names the settings to change on resume (see engine.resume). With
    `config.optim.lr == "find"` the LR range test picks the rate first (engine.lr_find)."""
    try:
        if config.optim.lr == "find":  # the LR range test's suggestion (engine.lr_find)
            from imgcls.engine.lr_find import with_found_lr

            config = with_found_lr(config, given=given)
        return fit(plan(config, given=given))
    except distributed.Terminated as e:  # outside the training loop (which names last.ckpt): before or after it
        raise TrainingError(str(e)) from None
    finally:
        distributed.shutdown()


def fit(p: Plan) -> RunResult:
    cfg, dist, t0 = p.config, p.dist, time.perf_counter()
    run_dir = dist.run_on_main(open_run_dir, p)  # rank 0 picks (and makes) the folder
    with run_log(run_dir if dist.is_main else None):
        log_plan(p)
        net, train_b, val_b = batches(p)
        state = TrainState.start(p, net, steps_per_epoch=train_b.steps())
        rule = step_rule(p, run_dir)
        # DDP after the weights are restored; validation and checkpoints use net itself (plain state dicts)
        step_net = dist.wrap(net)
        step_net = torch.compile(step_net) if cfg.model.compile else step_net  # shares net's parameters
        epochs, saves = recorders(p, run_dir, state, steps_per_epoch=train_b.steps())
        log_start(p, state)
        result = RunResult(run_dir, 0.0, 0, state.pos.epoch, 0.0,
                           score={"segmentation": "val mean IoU", "multilabel": "val mAP"}.get(p.task.name,
                                                                                                "val top-1"))
        try:
            with STOP.installed(collective=dist.world > 1), epochs:
                for epoch in range(state.pos.epoch, cfg.train.epochs):
                    row = run_epoch(p, epoch, state, rule, step_net, net, train_b, val_b, saves)
                    with STOP.deferred():  # the epoch's row, best and checkpoints go together
                        improved = state.stopping.update(row)
                        state.history.append(row)
                        epochs.record(row, improved=improved)
                        state.pos = Position(epoch + 1)
                        saves.epoch_end(state.checkpoint(p), improved=improved)
                    result.epochs_run = epoch + 1
                    if state.stopping.should_stop:
                        log.info("early stop: no better %s for %d epochs", state.stopping.key, cfg.train.patience)
                        result.stopped_early = True
                        break
        except KeyboardInterrupt:
            result.interrupted = True
            with STOP.deferred():  # torchrun passes a Ctrl-C on to its workers: a second one waits for the save
                saves.interrupted(state.checkpoint(p))
        except (RuntimeError, distributed.Terminated) as e:
            if not distributed.lost_peer(e, dist):
                raise
            distributed.leaving()  # torchrun's SIGTERM, on its way, must not cut this line short
            raise lost_peer_error(p, run_dir, e) from None
        result.seconds = time.perf_counter() - t0
        result.best_top1, result.best_epoch = state.stopping.best_top1, state.stopping.best_epoch
        result.metric, result.best_score = state.stopping.key, state.stopping.best_score
        result.history = list(state.history)
        if not result.interrupted and state.history:
            final_report(p, state, net, val_b, rule, run_dir)
            log.info("%s", result.summary_line(cfg.model.model))
    return result


# -- the pieces fit calls -----------------------------------------------------------------------

def step_rule(p: Plan, run_dir: Path) -> StepRule:
    cfg, task = p.config, p.task
    weighted = {} if p.class_weights is None else {"class_weights": p.class_weights}  # classification's
    criterion = task.criterion(label_smoothing=cfg.optim.label_smoothing, **weighted)
    return StepRule(task, criterion.to(p.device),
                    BatchMixer(cfg.data, seed=cfg.train.seed, num_classes=len(task.classes)), p.dist,
                    p.amp_dtype, cfg.optim.clip_grad, cfg.train.aux_weight, run_dir)


def recorders(p: Plan, run_dir: Path, state: TrainState, *, steps_per_epoch: int) -> tuple[Any, Any]:
    """(the epoch log, the checkpoint writer); only rank 0 writes: the other ranks hold a Quiet of each."""
    if not p.dist.is_main:
        return Quiet(), Quiet()
    t = p.config.train
    return (EpochLog(run_dir, p.task, state.history, epochs=t.epochs, tensorboard=t.tensorboard,
                     fresh=p.resume is None, ema=state.ema is not None),
            Checkpoints(run_dir, save_every=t.save_every, steps_per_epoch=steps_per_epoch))


def run_epoch(p: Plan, epoch: int, state: TrainState, rule: StepRule, step_net: nn.Module, net: nn.Module,
              train_b: Any, val_b: Any, saves: Any) -> dict:
    """One epoch's training steps (a checkpoint every --save-every steps), then validation of the
    weights (and of the EMA weights when kept): the epoch's row."""
    t = p.config.train
    train_mode(p, net)
    n_imgs, seconds = train_one_epoch(
        step_net, train_b, state, rule, epoch=epoch, desc=f"epoch {epoch + 1}/{t.epochs}",
        after_step=lambda: saves.step(lambda: state.checkpoint(p), global_step=state.global_step,
                                      epoch_step=state.pos.step),
        progress=t.progress)
    val = evaluate(net, val_b, rule, epoch=epoch, lr=state.lr)
    if state.ema is not None:
        val |= evaluate(ema_net(state, net), val_b, rule, epoch=epoch, lr=state.lr, prefix="ema_")
    return epoch_row(state.pos, val, global_step=state.global_step, lr=state.lr,
                     n_imgs=n_imgs * p.dist.world, seconds=seconds)  # every rank: as many images


def log_plan(p: Plan) -> None:
    if p.resume is not None:
        resume.log_changes(p.resume.changes)
    for note in p.notes:
        log.info("%s", note)


def log_start(p: Plan, state: TrainState) -> None:
    cfg = p.config
    log.info("%s", lr_rule(cfg.optim, cfg.data.batch_size, p.dist.world, state.optimizer.param_groups[0]["base_lr"]))
    log.info("training %s on %s: %d train / %d val images, %d classes, transfer %s, device %s%s",
             cfg.model.model, p.data.source, len(p.data.train), len(p.data.val), len(p.task.classes),
             p.policy, p.device, f", autocast {p.amp_dtype}" if p.amp_dtype else "")


def train_mode(p: Plan, net: nn.Module) -> None:
    if net is p.model:
        p.policy.set_train_mode(p.model)  # frozen BatchNorm stays in eval mode
    else:
        net.train()


def ema_net(state: TrainState, net: nn.Module) -> nn.Module:
    """The EMA copy of `net` (the model, its head when features are cached, its tail on cached maps)."""
    if isinstance(net, Tail):
        return Tail(state.ema.module, net.split, net.policy)
    name = next(n for n, m in state.model.named_modules() if m is net)
    return state.ema.module.get_submodule(name)


def lost_peer_error(p: Plan, run_dir: Path, e: BaseException) -> TrainingError:
    why = (", so torchrun stopped this one (SIGTERM; it does the same when it is asked to stop)"
           if distributed.terminated() else
           f" or did not answer within --dist-timeout {p.config.train.dist_timeout}s ({summary_of(e)})")
    last = run_dir / "last.ckpt"
    return TrainingError(f"rank {p.dist.rank}: another process of this run stopped{why}; {last} holds the last "
                         f"saved state: see the failed rank's error, then continue with --resume {last}")


def final_report(p: Plan, state: TrainState, net: nn.Module, val_b: Any, rule: StepRule, run_dir: Path) -> None:
    """The task's report of the best weights on the val set (the EMA weights when the run keeps them:
    what eval and predict will use), and their calibration on it, written into best.ckpt."""
    best = run_dir / "best.ckpt"
    current = {k: v.clone() for k, v in state.model.state_dict().items()}
    saved = load_checkpoint(best) if p.dist.is_main and best.is_file() else None
    best_state = p.dist.from_main(saved.get("model_ema", saved["model"]) if saved is not None else None)
    if best_state is not None:
        state.model.load_state_dict(best_state)
    if getattr(p.task, "streamed", False):
        tally = tally_all(net, val_b, p.task, dist=p.dist, amp_dtype=p.amp_dtype)
        state.model.load_state_dict(current)
        if p.dist.is_main:
            p.task.tally_report(tally, run_dir=run_dir, history=state.history,
                                title=f"{p.config.model.model} ({best.name}) on {p.data.source}")
        return
    outputs, targets = predict_all(net, val_b, dist=p.dist, amp_dtype=p.amp_dtype)
    state.model.load_state_dict(current)
    if p.dist.is_main:
        p.task.report(outputs, targets, paths=[str(path) for path, _ in p.data.val.samples], run_dir=run_dir,
                      history=state.history)
        if saved is not None:
            calibrate(p, saved, outputs, targets, best)


def calibrate(p: Plan, saved: dict, outputs: Any, targets: Any, best: Path) -> None:
    """The task's calibration of the best weights' val outputs (classification: the temperature and the
    abstain thresholds, reports.calibration), added to best.ckpt, which predict, eval, serve and export read."""
    record = getattr(p.task, "calibrate", lambda *_: None)(outputs, targets)
    if record is None:
        return
    save_checkpoint({**saved, "calibration": record}, best)
    if hasattr(p.task, "calibration_line"):
        log.info("%s (written into %s)", p.task.calibration_line(record), best)
        return
    log.info("calibration on %d val images: temperature %.3f, expected calibration error %.2f%% -> %.2f%% "
             "(written into %s)", record["fitted_on"], record["temperature"], 100 * record["ece_before"],
             100 * record["ece_after"], best)

