"""Remedies for unbalanced classes: per-class loss weights and a sampler that draws classes evenly.

Class weights (`--class-weights`), each normalised to mean 1 over the classes so the loss keeps its
scale and the learning rate its meaning:

    balanced    1 / n_c: inverse frequency (scikit-learn's and Keras' "balanced", up to that scale)
    effective   (1 - beta) / (1 - beta^n_c): the inverse of the effective number of samples of Cui et al.,
                "Class-Balanced Loss Based on Effective Number of Samples" (CVPR 2019); beta -> 1 is the
                inverse frequency, beta = 0 no weighting; 0.999 (the paper's usual value) tempers the
                weight of a class of a few hundred images

A class without training images counts as one image (its weight only matters under label smoothing).

`BalancedSampler` draws each epoch's order with replacement, image i with probability proportional to
1 / (images of its class), so every class is drawn equally often on average; like `SeededSampler` the
order and every draw's augmentation seed depend only on (seed, epoch, position), so a resumed run sees
the batches the uninterrupted one saw, and under DDP each rank takes every world-th draw.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from imgcls.data.loader import SeededSampler, sample_seed

WEIGHTINGS = ("none", "balanced", "effective")
_DRAW_STREAM = 2**43  # sample_seed index space of the balanced draws: above any position and the other streams


def class_counts(targets: Sequence[int], num_classes: int) -> list[int]:
    """Images per class of `targets` (class indices)."""
    return torch.bincount(torch.as_tensor(list(targets), dtype=torch.long), minlength=num_classes).tolist()


def class_weights(counts: Sequence[int], mode: str, *, beta: float = 0.999) -> list[float] | None:
    """The per-class loss weights of `mode` (see the module's docstring), mean 1; None for "none"."""
    if mode == "none":
        return None
    n = torch.tensor([max(1, c) for c in counts], dtype=torch.float64)
    if mode == "balanced":
        raw = 1.0 / n
    elif mode == "effective":
        raw = (1.0 - beta) / (1.0 - beta ** n)
    else:
        raise ValueError(f"unknown class weighting {mode!r}; known: {', '.join(WEIGHTINGS)}")
    return (raw / raw.mean()).tolist()


def weights_line(classes: Sequence[str], counts: Sequence[int], weights: Sequence[float], how: str) -> str:
    """The one log line of a run's class weights: `class (images) weight` for every class."""
    listed = ", ".join(f"{c} ({n}) {w:.3g}" for c, n, w in zip(classes, counts, weights))
    return f"class weights {how}, mean 1: {listed}"


class BalancedSampler(SeededSampler):
    """SeededSampler's contract (set_epoch with a resume offset, order(), rank/world/limit) over draws with
    replacement that give every class the same share of the epoch (see the module's docstring). An epoch is
    as long as the plain sampler's: `len(targets)` draws (`limit` of them under DDP)."""

    def __init__(self, targets: Sequence[int], *, seed: int = 0, rank: int = 0, world: int = 1,
                 limit: int | None = None) -> None:
        super().__init__(len(targets), seed=seed, shuffle=True, rank=rank, world=world, limit=limit)
        t = torch.as_tensor(list(targets), dtype=torch.long)
        self.probs = (1.0 / torch.bincount(t).double())[t] if len(t) else torch.zeros(0, dtype=torch.float64)

    def draws(self) -> list[int]:
        """Every draw of the epoch, before sharding: the same on every rank."""
        if not self.n:
            return []
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, _DRAW_STREAM))
        return torch.multinomial(self.probs, self.limit, replacement=True, generator=g).tolist()

    def order(self) -> list[int]:
        return self.draws()[self.rank::self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # the seed follows the draw's position, not the image: an image drawn twice gets two augmentations
        draws = self.draws()
        for position in range(self.rank, self.limit, self.world)[self.start:]:
            yield draws[position], sample_seed(self.seed, self.epoch, position)
