"""One epoch of training steps and one pass of evaluation, as plain functions with explicit arguments;
`engine.fit` calls them. The task (tasks/) says what the loss, the hits and the metrics are."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.engine.distributed import Dist
from imgcls.engine.interrupt import STOP
from imgcls.engine.recipes import BatchMixer
from imgcls.engine.state import Position, TrainState
from imgcls.errors import TrainingError
from imgcls.progress import show_progress
from imgcls.runtime import run_model
from imgcls.tasks import Task


@dataclass(frozen=True)
class StepRule:
    """How every update of a run is made."""

    task: Task
    criterion: nn.Module
    mixer: BatchMixer
    dist: Dist
    amp_dtype: torch.dtype | None
    clip_grad: float | None
    aux_weight: float
    run_dir: Path  # named by the divergence message


def diverged(what: str, value: float, *, epoch: int, step: int | None, lr: float, run_dir: Path) -> TrainingError:
    """The error that stops a run whose loss is no longer finite (before the update that would spread it)."""
    where = f"epoch {epoch + 1}" + (f" step {step}" if step is not None else " (validation)")
    last = run_dir / "last.ckpt"
    kept = f"; {last} holds the last finite state" if last.is_file() else "; no checkpoint was written"
    return TrainingError(f"the {what} became {value} at {where} with lr {lr:.3g}: the run stopped{kept}; lower "
                         "--lr (or add --warmup-epochs / --clip-grad) and start a new run")


def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, state: TrainState, rule: StepRule, *,
               epoch: int, step: int) -> tuple[float, float, bool]:
    """One update of `state`: (loss, hits) averaged over ranks, and whether all ranks stop after it (a
    Ctrl-C on any of them, agreed in the same all-reduce)."""
    x, target = rule.mixer(x, y, epoch=epoch, step=step)
    with torch.autocast(x.device.type, dtype=rule.amp_dtype or torch.float32, enabled=rule.amp_dtype is not None):
        loss, logits = rule.task.loss(rule.task.outputs(net, x), target, rule.criterion, aux_weight=rule.aux_weight)
    # under DDP the per-rank means of the whole step's loss and hits: every rank keeps the same running
    # sums (a checkpoint's are the run's), and a non-finite loss on any rank stops all ranks here
    value, hits, *stop = rule.dist.average(float(loss.detach()), rule.task.hits(logits, target),
                                           *([float(STOP.requested)] if rule.dist.world > 1 else []))
    if not math.isfinite(value):  # before the update: the weights stay finite, no checkpoint gets NaN
        raise diverged("training loss", value, epoch=epoch, step=step, lr=state.lr, run_dir=rule.run_dir)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if rule.clip_grad:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), rule.clip_grad)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.schedule.step()
    state.global_step += 1
    if state.ema is not None:
        state.ema.update(state.model, updates=state.global_step - 1)
    return value, hits, bool(stop and stop[0] > 0)


def train_one_epoch(net: nn.Module, batches: Any, state: TrainState, rule: StepRule, *, epoch: int,
                    after_step: Callable[[], None], desc: str, progress: bool) -> tuple[int, float]:
    """Run epoch `epoch` from `state.pos` (a resumed run starts mid-epoch). Each step's update and its new
    Position go together under `STOP.deferred()`, then `after_step` (a checkpoint every --save-every
    steps). Returns the images trained and the seconds taken."""
    tic, n_imgs, start = time.perf_counter(), 0, state.pos.step
    bar = show_progress(batches.steps(), initial=start, desc=desc, enabled=progress)
    for number, (x, y) in enumerate(batches.epoch(epoch, start), start=start + 1):
        with STOP.deferred():
            loss, hits, stop_all = train_step(net, x, y, state, rule, epoch=epoch, step=number)
            sums = state.pos.sums
            state.pos = Position(epoch, number, {"loss": sums.get("loss", 0.0) + loss * len(y),
                                                 "correct": sums.get("correct", 0.0) + hits,
                                                 "n": sums.get("n", 0.0) + len(y)})
            after_step()
        if stop_all:
            raise KeyboardInterrupt  # every rank, after the same step
        n_imgs += len(y)
        bar.update(1)
        sums = state.pos.sums
        bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}",
                        img_s=f"{n_imgs / (time.perf_counter() - tic):.0f}")
    bar.close()
    return n_imgs, time.perf_counter() - tic


def predict_all(net: nn.Module, batches: Any, *, dist: Dist, amp_dtype: torch.dtype | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and targets of the whole set in sample order; under DDP each rank runs its share."""
    outputs, targets = run_model(net, batches.epoch(0), amp_dtype=amp_dtype)
    index = batches.sampler.order()
    return dist.gather_rows(outputs, index), dist.gather_rows(targets, index)


@torch.no_grad()
def tally_all(net: nn.Module, batches: Any, task: Any, *, dist: Dist, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """A streamed task's validation (tasks/base.py): `task.tally` of every batch, summed over batches and ranks;
    each batch's outputs are dropped once tallied."""
    net.eval()
    total = None
    for x, y in batches.epoch(0):
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            tally = task.tally(task.outputs(net, x), y)
        total = tally if total is None else total + tally
    assert total is not None, "validation without a batch"
    return dist.sum(total)


def evaluate(net: nn.Module, batches: Any, rule: StepRule, *, epoch: int, lr: float, prefix: str = ""
             ) -> dict[str, float]:
    """The task's validation metrics of `net` (keys prefixed: `ema_val_top1`); rank 0's numbers on every rank.
    A streamed task's come from its summed tally, every other task's from all outputs in sample order."""
    if getattr(rule.task, "streamed", False):
        tally = tally_all(net, batches, rule.task, dist=rule.dist, amp_dtype=rule.amp_dtype)
        metrics = rule.task.tally_metrics(tally, prefix=prefix)
    else:
        outputs, targets = predict_all(net, batches, dist=rule.dist, amp_dtype=rule.amp_dtype)
        metrics = rule.task.metrics(outputs, targets, prefix=prefix)
    for key, value in metrics.items():
        if not math.isfinite(value):
            what = key.replace("val_", "validation ").replace("_", " ").strip()
            raise diverged(what, value, epoch=epoch, step=None, lr=lr, run_dir=rule.run_dir)
    return rule.dist.from_main(metrics)


def epoch_row(pos: Position, val: dict[str, float], *, global_step: int, lr: float, n_imgs: int,
              seconds: float) -> dict[str, float]:
    """The metrics.csv row of a finished epoch."""
    n = max(1, pos.sums.get("n", 0))
    return {"epoch": pos.epoch + 1, "step": global_step, "train_loss": pos.sums.get("loss", 0) / n,
            "train_acc": pos.sums.get("correct", 0) / n, **val, "lr": lr, "epoch_seconds": seconds,
            "train_img_s": n_imgs / seconds if seconds > 0 else 0.0}
