"""The pieces of a training epoch: where the batches come from, the loss, one epoch of steps.

One loop serves every mode. With `--transfer full` or `last:` the batches are images for the
whole network (`ImageBatches`); with `head` / `head+` the frozen backbone has run once per image
(or once per augmented view, engine.features) and the batches are cached features for the head
(`FeatureBatches`). Both answer `steps()` and `epoch(e, start_step)`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from imgcls.data import BatchNormalizer, SeededItems, SeededSampler, make_loader
from imgcls.engine.config import Config
from imgcls.engine.distributed import LOCAL, Dist
from imgcls.engine.interrupt import defer_interrupt
from imgcls.engine.recipes import resize_batch, train_sizes
from imgcls.progress import show_progress


@dataclass(frozen=True)
class Position:
    """Where a run is: the epoch, the steps done in it and their running sums (loss, correct, n).
    A checkpoint written at a Position resumes exactly there."""

    epoch: int
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)


def compute_loss(output: Any, target: torch.Tensor, criterion: nn.Module, aux_weight: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits). A tuple output is (logits, *auxiliary logits) as GoogLeNet gives in
    training; each auxiliary loss is added with `aux_weight` (0.3 in the paper)."""
    if isinstance(output, (tuple, list)):
        logits, *aux = output
        loss = criterion(logits, target)
        for a in aux:
            if a is not None:
                loss = loss + aux_weight * criterion(a, target)
        return loss, logits
    return criterion(output, target), output


# -- batches: images through the whole model, or cached features through the head -------------

def shard_steps(n: int, batch_size: int, *, train: bool, dist: Dist) -> tuple[int, int | None]:
    """(steps per epoch, samples used) of one rank. Training takes whole global batches (batch x world),
    so every rank takes the same number of steps and the last partial batch is dropped; a set smaller
    than one batch is one short batch (a single process only: distributed.check_batches). Evaluation
    takes every sample once: each rank its share, without padding."""
    global_batch = batch_size * dist.world
    if train and n >= global_batch:
        return n // global_batch, n // global_batch * global_batch
    if train:
        return 1, None
    return math.ceil(len(range(dist.rank, n, dist.world)) / batch_size), None


class ImageBatches:
    def __init__(self, ds, cfg: Config, device: torch.device, *, train: bool, workers: int,
                 dist: Dist = LOCAL) -> None:
        self.cfg, self.device, self.train = cfg, device, train
        self.batch_size = cfg.data.batch_size
        self.n_steps, used = shard_steps(len(ds), self.batch_size, train=train, dist=dist)
        self.sampler = SeededSampler(len(ds), seed=cfg.train.seed, shuffle=train, rank=dist.rank, world=dist.world,
                                     limit=used)
        self.loader = make_loader(SeededItems(ds), batch_size=self.batch_size, sampler=self.sampler,
                                  workers=workers, device=device)
        # one kept input buffer: each step is done with its batch before the next is made
        self.normalize = BatchNormalizer(cfg.data.mean, cfg.data.std, device=device)
        self.size_at = train_sizes(cfg) if train else None  # --progressive: the epoch's train size

    def steps(self) -> int:
        return self.n_steps  # the whole epoch, whatever a resume offset says

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch, start=start_step * self.batch_size)
        size = self.size_at(epoch) if self.size_at is not None else None
        for images, targets in self.loader:
            x = self.normalize(images if size is None else resize_batch(images, size))
            if not self.cfg.model.channels_last:
                x = x.contiguous()
            yield x, targets.to(self.device, non_blocking=True)


class FeatureBatches:
    """Cached features [views, N, D]; epoch e reads view e % views in the epoch's seeded order."""

    def __init__(self, feats: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int, train: bool,
                 dist: Dist = LOCAL) -> None:
        self.feats, self.targets, self.batch_size, self.train = feats, targets, batch_size, train
        self.n_steps, used = shard_steps(len(targets), batch_size, train=train, dist=dist)
        self.sampler = SeededSampler(len(targets), seed=seed, shuffle=train, rank=dist.rank, world=dist.world,
                                     limit=used)

    def steps(self) -> int:
        return self.n_steps

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        order = torch.tensor(self.sampler.order(), dtype=torch.long)
        view = self.feats[epoch % self.feats.shape[0]]
        for s in range(start_step, self.steps()):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            yield view[idx], self.targets[idx]


# -- one epoch --------------------------------------------------------------------------------

def train_one_epoch(step: Callable[[torch.Tensor, torch.Tensor, int], tuple[float, int]], batches,
                    start: Position, *, moved: Callable[[Position], None], desc: str, progress: bool
                    ) -> tuple[Position, int, float]:
    """Run the epoch `start.epoch` from step `start.step`; `step(x, y, step_number)` updates the model
    and returns (loss, correct). After each step, still under `defer_interrupt` with the update, the
    new Position goes to `moved` (the trainer keeps it for a Ctrl-C checkpoint). Returns the final
    Position, the images trained and the seconds taken."""
    tic, n_imgs, pos = time.perf_counter(), 0, start
    bar = show_progress(batches.steps(), initial=start.step, desc=desc, enabled=progress)
    for number, (x, y) in enumerate(batches.epoch(start.epoch, start.step), start=start.step + 1):
        with defer_interrupt():
            loss, correct = step(x, y, number)
            sums = pos.sums
            pos = Position(pos.epoch, number, {"loss": sums.get("loss", 0.0) + loss * len(y),
                                               "correct": sums.get("correct", 0.0) + correct,
                                               "n": sums.get("n", 0.0) + len(y)})
            moved(pos)
        n_imgs += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{pos.sums['loss'] / pos.sums['n']:.3f}", acc=f"{pos.sums['correct'] / pos.sums['n']:.3f}",
                        img_s=f"{n_imgs / (time.perf_counter() - tic):.0f}")
    bar.close()
    return pos, n_imgs, time.perf_counter() - tic


def epoch_row(pos: Position, val: dict[str, float], *, global_step: int, lr: float, n_imgs: int,
              seconds: float) -> dict[str, float]:
    """The metrics.csv row of a finished epoch."""
    n = max(1, pos.sums.get("n", 0))
    return {"epoch": pos.epoch + 1, "step": global_step, "train_loss": pos.sums.get("loss", 0) / n,
            "train_acc": pos.sums.get("correct", 0) / n, **val, "lr": lr, "epoch_seconds": seconds,
            "train_img_s": n_imgs / seconds if seconds > 0 else 0.0}
