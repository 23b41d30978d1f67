"""DataLoader settings that keep the cores busy and give the same batches for the same seed."""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """One worker per core the process may use, at most 8; the main process runs the model."""
    return min(usable_cores(), 8)


def train_workers(device: torch.device | str) -> int:
    """Loader workers for training on `device`. On a CPU the main process's intra-op threads already
    use every core for the step, and decoding plus cropping a photo takes a small fraction of a
    training step's time per image, so one worker per 4 cores (at least one) keeps the step fed
    without oversubscribing the cores; on an accelerator the cores are free for loading."""
    if torch.device(device).type != "cpu":
        return default_workers()
    return max(1, min(usable_cores() // 4, 8))


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker as base_seed + worker_id; numpy and random follow from it
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def collate_uint8(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack HWC uint8 arrays into one NHWC uint8 tensor (see transforms.normalize_batch).

    In a loader worker the batch is stacked straight into shared memory, as torch's default
    collate does, instead of being copied there when it is sent to the main process.
    """
    arrays = [np.asarray(img) for img, _ in batch]
    shape = (len(arrays), *arrays[0].shape)
    if get_worker_info() is not None:
        storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
        images = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    else:
        images = torch.empty(shape, dtype=torch.uint8)
    np.stack(arrays, out=images.numpy())
    targets = [t for _, t in batch]
    if isinstance(targets[0], torch.Tensor):  # multi-hot float vectors (a multi-label set)
        return images, torch.stack(targets)
    return images, torch.tensor(targets, dtype=torch.long)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool = False, workers: int | None = None,
                seed: int = 0, device: str | torch.device = "cpu", drop_last: bool = False,
                uint8: bool = True, sampler: Sampler | None = None, collate: Callable | None = None) -> DataLoader:
    """A DataLoader whose order and augmentations depend only on `seed` and the worker count.

    With `workers=0` everything runs in the calling process (works everywhere, spawn included) and
    augmentations draw from torch's global generator, which the caller seeds. Workers persist
    across epochs; memory is pinned only when batches go to a CUDA device. With a `SeededSampler`,
    pass the dataset wrapped in `SeededItems`: then batches do not depend on the worker count.
    `collate` replaces the uint8 collate (segmentation's photo and mask batches: seg_transforms.collate_masks).
    """
    workers = default_workers() if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else None, sampler=sampler,
        num_workers=workers, generator=generator,
        worker_init_fn=_seed_worker if workers else None, persistent_workers=workers > 0,
        pin_memory=torch.device(device).type == "cuda", drop_last=drop_last,
        collate_fn=collate if collate is not None else collate_uint8 if uint8 else None, prefetch_factor=4 if workers else None,
    )


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: a function of (run seed, epoch, index) only."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63


class SeededSampler(Sampler):
    """Yields `(index, sample_seed)`: the epoch's order and every sample's augmentation seed.

    Both depend only on (seed, epoch, index), never on the worker count or on what ran before,
    so a run resumed mid-epoch (`set_epoch(epoch, start=steps_done * batch_size)`) sees exactly
    the batches the uninterrupted run would have seen. With `world > 1` each rank takes every
    world-th sample of the same permutation (DistributedDataParallel), so step s of every rank
    together covers positions [s * B * world, (s + 1) * B * world) of the order: the batch of a
    single process with batch B * world. `limit` keeps only the order's first `limit` samples
    (whole global batches), so every rank takes the same number of steps and no sample repeats.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1,
                 limit: int | None = None) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.limit = n if limit is None else min(limit, n)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 2**40))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return order[:self.limit][self.rank::self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.order()[self.start:]:
            yield i, sample_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.limit, self.world)) - self.start)


class SeededItems(Dataset):
    """Wraps a dataset so item `(index, seed)` runs its random transforms from `seed`.

    The transforms draw from torch's global generator; it is set to `seed` for the one item and
    restored afterwards, so the caller's own random stream (dropout, init) is left untouched.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        state = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)
