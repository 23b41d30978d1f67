"""Where a training epoch's batches come from. With `--transfer full` (or `--feature-views 0`) they are
images for the whole network (`ImageBatches`); with `head` / `head+` the frozen backbone has run once per
image (or once per augmented view, engine.features) and they are cached features for the head, with
`last:` cached maps of the frozen prefix for the network's tail (both `FeatureBatches`). Both classes
answer `steps()` and `epoch(e, start_step)`, and shard the data over DDP ranks the same way.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from imgcls.data import SeededItems, SeededSampler, make_loader
from imgcls.data.balance import BalancedSampler
from imgcls.data.loader import sample_seed
from imgcls.engine.build import preprocessing
from imgcls.engine.config import Config
from imgcls.engine.distributed import LOCAL, Dist
from imgcls.engine.recipes import resize_batch, train_sizes

_FLIP_STREAM = 2**42  # sample_seed index space of the map flips: far above any sample index (recipes: 2**41)


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


def epoch_sampler(n: int, *, seed: int, train: bool, dist: Dist, limit: int | None,
                  balanced: Callable[[], list[int]] | None = None) -> SeededSampler:
    """The sampler of a set of `n` samples: the train order, or the set in order for evaluation; sharded over
    DDP ranks either way. `balanced` (--sampler balanced) gives the set's class indices for BalancedSampler."""
    if train and balanced is not None:
        return BalancedSampler(balanced(), seed=seed, rank=dist.rank, world=dist.world, limit=limit)
    return SeededSampler(n, seed=seed, shuffle=train, rank=dist.rank, world=dist.world, limit=limit)


class ImageBatches:
    def __init__(self, ds, cfg: Config, device: torch.device, *, train: bool, workers: int,
                 dist: Dist = LOCAL) -> None:
        self.cfg, self.device, self.train = cfg, device, train
        self.batch_size = cfg.data.batch_size
        self.n_steps, used = shard_steps(len(ds), self.batch_size, train=train, dist=dist)
        targets = (lambda: [t for _, t in ds.samples]) if cfg.data.sampler == "balanced" else None
        self.sampler = epoch_sampler(len(ds), seed=cfg.train.seed, train=train, dist=dist, limit=used,
                                     balanced=targets)
        self.loader = make_loader(SeededItems(ds), batch_size=self.batch_size, sampler=self.sampler,
                                  workers=workers, device=device, collate=getattr(ds, "collate", None))
        # one kept input buffer: each step is done with its batch before the next is made
        self.normalize = preprocessing(cfg.data).normalizer(device)
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
    """Cached outputs of the frozen part [views, N, ...] (engine.features); epoch e reads view e % views in
    the epoch's seeded order, each batch moved to `device` as float32. Maps (`last:`) stay on the CPU,
    where they were made, and may be flipped horizontally, each sample with probability `flip` drawn from
    (seed, epoch, sample) only, so a resumed epoch flips what the uninterrupted one did; `channels_last`
    lays the batch out as the network wants it; `balanced`: --sampler balanced's order."""

    def __init__(self, feats: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int, train: bool,
                 device: torch.device, dist: Dist = LOCAL, flip: float = 0.0, channels_last: bool = False,
                 balanced: bool = False) -> None:
        self.feats, self.targets, self.batch_size, self.train = feats, targets, batch_size, train
        self.seed, self.device, self.flip, self.channels_last = seed, device, flip, channels_last
        self.n_steps, used = shard_steps(len(targets), batch_size, train=train, dist=dist)
        self.sampler = epoch_sampler(len(targets), seed=seed, train=train, dist=dist, limit=used,
                                     balanced=targets.tolist if balanced else None)

    def steps(self) -> int:
        return self.n_steps

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        order = torch.tensor(self.sampler.order(), dtype=torch.long)
        view = self.feats[epoch % self.feats.shape[0]]
        flips = None
        if self.flip > 0:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, _FLIP_STREAM))
            flips = torch.rand(len(self.targets), generator=g) < self.flip
        for s in range(start_step, self.steps()):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            x = view[idx].to(self.device, torch.float32, non_blocking=True)
            if flips is not None:
                x = torch.where(flips[idx].to(self.device).view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.targets[idx].to(self.device, non_blocking=True)
