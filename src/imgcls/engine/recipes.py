"""Training-recipe pieces that act on whole batches or on the weights: mixup/cutmix, progressive
resizing, the model EMA. (Per-image policies, TrivialAugmentWide, RandAugment and random erasing,
run in the loader: data/augment.py.)

Every random choice here is a function of the run's (seed, epoch, step), never of a generator
that carries state from step to step, so a run resumed mid-epoch mixes its batches exactly as
the uninterrupted run did.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.data.loader import sample_seed
from imgcls.engine.config import Config, DataConfig, parse_progressive  # noqa: F401 - recipes' public name too

_MIX_STREAM = 2**41  # sample_seed index space of the batch mixer: far above any sample index


# -- mixup / cutmix ----------------------------------------------------------------------------

class BatchMixer:
    """Mixup (Zhang et al., 2018) and CutMix (Yun et al., 2019) as torchvision's v2 MixUp/CutMix do
    them: each image is mixed with its neighbour in the batch (the batch rolled by one), with
    lambda ~ Beta(alpha, alpha); the targets become the same mix of one-hot labels (of a multi-label
    set's multi-hot vectors, as they come). A batch is mixed with probability `mix_prob`; with both on,
    `cutmix_share` of the mixed batches use CutMix.
    """

    def __init__(self, cfg: DataConfig, *, seed: int, num_classes: int) -> None:
        self.mixup, self.cutmix = cfg.mixup, cfg.cutmix
        self.mix_prob, self.cutmix_share = cfg.mix_prob, cfg.cutmix_share
        self.seed, self.num_classes = seed, num_classes

    @property
    def enabled(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mix_prob > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, epoch: int, step: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, targets) of step `step` of `epoch`: the batch as it is with its class indices, or
        mixed in place with [N, classes] soft targets."""
        if not self.enabled or len(y) < 2:
            return x, y
        rng = np.random.default_rng(sample_seed(self.seed, epoch, _MIX_STREAM + step))
        if rng.random() >= self.mix_prob:
            return x, y
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or rng.random() < self.cutmix_share)
        lam = float(rng.beta(self.cutmix, self.cutmix) if use_cutmix else rng.beta(self.mixup, self.mixup))
        rolled = x.roll(1, 0)
        if use_cutmix:
            h, w = x.shape[-2:]
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            r = 0.5 * math.sqrt(1.0 - lam)
            rh, rw = int(r * h), int(r * w)
            y1, y2, x1, x2 = max(cy - rh, 0), min(cy + rh, h), max(cx - rw, 0), min(cx + rw, w)
            x[..., y1:y2, x1:x2] = rolled[..., y1:y2, x1:x2]
            lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)  # the area actually kept
        else:
            x.mul_(lam).add_(rolled, alpha=1.0 - lam)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        one_hot = y.to(dtype) if y.is_floating_point() else F.one_hot(y, self.num_classes).to(dtype)
        return x, one_hot.mul(lam).add_(one_hot.roll(1, 0), alpha=1.0 - lam)


# -- progressive resizing ----------------------------------------------------------------------

def progressive_size(start: int, end: int, epoch: int, *, epochs: int, stages: int = 0) -> int:
    """The train crop size of `epoch` (0-based): START at the first epoch, END at the last. Linear
    sizes are rounded to multiples of 16 px (so CNN strides divide them and few sizes occur);
    `stages` >= 2 holds each of that many equally spaced sizes for an equal share of the epochs."""
    if epochs <= 1 or start == end:
        return end
    if stages >= 2:
        stage = min(stages - 1, epoch * stages // epochs)
        size = start + (end - start) * stage / (stages - 1)
    else:
        size = start + (end - start) * epoch / (epochs - 1)
    return int(min(end, max(start, 16 * round(size / 16))))


def train_sizes(cfg: Config) -> Callable[[int], int] | None:
    """epoch -> train crop size under --progressive (None without it). The loader crops at END (its
    transform is fixed for the run, so persistent workers and the decoded cache, whose shorter side
    only has to reach END, serve every epoch); smaller epochs shrink the batch before normalising.
    The size is a function of the epoch alone, so a resume continues at the right size."""
    d = cfg.data
    if d.progressive is None:
        return None
    start, end = parse_progressive(d.progressive)
    return partial(progressive_size, start, end, epochs=cfg.train.epochs, stages=d.progressive_stages)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NHWC batch -> the same batch at size x size (antialiased bilinear, torch's channels_last
    uint8 kernel): the crops the loader made at the final size, shrunk for an early epoch."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    x = images.permute(0, 3, 1, 2)  # a channels_last NCHW view, what the vectorised uint8 kernel wants
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.permute(0, 2, 3, 1).contiguous()


# -- model EMA ---------------------------------------------------------------------------------

class ModelEma:
    """An exponential moving average of a model's weights (Polyak averaging; timm's ModelEmaV2 and
    torchvision's reference ExponentialMovingAverage): after each optimizer step every floating
    state entry, BatchNorm statistics included, moves to `d * ema + (1 - d) * current`; integer
    buffers are copied. The decay is warmed up as TensorFlow's ExponentialMovingAverage does,
    d = min(decay, (1 + n) / (10 + n)) at update n, so early averages are not dominated by the
    random initialisation. The update count is the run's global step, so a resume continues it."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, *, updates: int) -> None:
        """Average in `model`'s current weights; `updates` is the number of updates before this one."""
        d = min(self.decay, (1 + updates) / (10 + updates))
        current = model.state_dict()
        for name, e in self.module.state_dict().items():
            m = current[name]
            if e.is_floating_point():
                e.lerp_(m.detach(), 1.0 - d)
            else:
                e.copy_(m)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
