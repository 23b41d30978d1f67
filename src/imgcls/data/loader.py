"""DataLoader settings that keep the cores busy and give the same batches for the same seed."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def default_workers() -> int:
    """One worker per core the process may use, at most 8; the main process runs the model."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker as base_seed + worker_id; numpy and random follow from it
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def collate_uint8(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack HWC uint8 arrays into one NHWC uint8 tensor (see transforms.normalize_batch)."""
    images = torch.from_numpy(np.stack([img for img, _ in batch]))
    return images, torch.tensor([t for _, t in batch], dtype=torch.long)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool = False, workers: int | None = None,
                seed: int = 0, device: str | torch.device = "cpu", drop_last: bool = False,
                uint8: bool = True) -> DataLoader:
    """A DataLoader whose order and augmentations depend only on `seed` and the worker count.

    With `workers=0` everything runs in the calling process (works everywhere, spawn included) and
    augmentations draw from torch's global generator, which the caller seeds. Workers persist
    across epochs; memory is pinned only when batches go to a CUDA device.
    """
    workers = default_workers() if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator,
        worker_init_fn=_seed_worker if workers else None, persistent_workers=workers > 0,
        pin_memory=torch.device(device).type == "cuda", drop_last=drop_last,
        collate_fn=collate_uint8 if uint8 else None, prefetch_factor=4 if workers else None,
    )
