"""Frozen BatchNorm folded into its convolution, for fine-tuning from pretrained weights.

A BatchNorm whose statistics do not change (the pretrained running mean and variance, used in
training as well as in evaluation) is a per-channel affine map: y = s * conv(x) + b with
s = gamma / sqrt(var + eps) and b = beta - mean * s. Folded into the convolution before it, it
becomes conv(x; w * s) + b: one convolution with a bias instead of a convolution followed by two
passes over its output (BatchNorm forward, and its backward in training). gamma and beta still
train: their gradients flow through w * s and b, a few thousand multiplications per step.

On a 2-core CPU this removes about a fifth of a depthwise network's training step (BatchNorm was
23% of EfficientNet-Lite0's step in the profile of benchmarks/RESULTS.md). It changes the training
from batch statistics to the pretrained ones, the practice of detection and segmentation
fine-tuning with small batches (torchvision's FrozenBatchNorm2d).

The model keeps its modules and its state-dict keys: each folded convolution's class becomes a
subclass that folds on the fly, each folded BatchNorm's class one that passes its input through.
A saved checkpoint is an ordinary model whose BatchNorm layers, in eval mode, compute what the
folded model computed. `fold_batchnorm` checks this on a small input and undoes itself where a
model does not feed each BatchNorm from the convolution registered just before it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_FOLDED: dict[type, type] = {}


class _FoldedAway(nn.BatchNorm2d):
    """A BatchNorm2d whose affine map the convolution before it applies: the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _folded_conv(base: type[nn.Conv2d]) -> type[nn.Conv2d]:
    if base not in _FOLDED:
        def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            bn = self.__dict__["_folded_bn"]  # not a registered submodule: the state dict keeps its keys
            s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            b = bn.bias - bn.running_mean * s
            if bias is not None:
                b = b + bias * s
            return base._conv_forward(self, x, weight * s.reshape(-1, 1, 1, 1), b)

        _FOLDED[base] = type(f"Folded{base.__name__}", (base,), {"_conv_forward": _conv_forward,
                                                                   "__module__": __name__})
    return _FOLDED[base]


def _pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(convolution, the BatchNorm registered right after it in the same parent) with matching width;
    BatchNorm layers with affine parameters and running statistics only."""
    found = []
    for parent in model.modules():
        kids = list(parent._modules.values())
        for conv, bn in zip(kids, kids[1:]):
            if (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d
                    and bn.affine and bn.track_running_stats and conv.out_channels == bn.num_features):
                found.append((conv, bn))
    return found


def fold_batchnorm(model: nn.Module, *, check_size: int = 64,
                   keep: Callable[[nn.BatchNorm2d], bool] | None = None) -> int:
    """Fold every BatchNorm that directly follows its convolution (or those `keep` selects) into it, in
    place; returns how many were folded (0 when the model has none, or when the folded model's eval
    output on a random `check_size` input differs from the original's: then nothing is folded)."""
    pairs = [(c, b) for c, b in _pairs(model) if keep is None or keep(b)]
    if not pairs:
        return 0
    was_training = model.training
    param = next(model.parameters())
    x = torch.randn(2, 3, check_size, check_size, generator=torch.Generator().manual_seed(0)).to(param.device)
    model.eval()
    with torch.no_grad():
        before = _first(model(x))
        for conv, bn in pairs:
            conv.__dict__["_folded_bn"] = bn
            conv.__class__ = _folded_conv(type(conv))
            bn.__class__ = _FoldedAway
        after = _first(model(x))
    model.train(was_training)
    if not torch.allclose(before, after, rtol=1e-3, atol=1e-3 * float(before.abs().max().clamp(min=1))):
        unfold_batchnorm(model)
        return 0
    return len(pairs)


def unfold_batchnorm(model: nn.Module) -> None:
    """Undo fold_batchnorm: the model's own classes again (its parameters were never changed)."""
    for m in model.modules():
        if isinstance(m, _FoldedAway):
            m.__class__ = nn.BatchNorm2d
        elif "_folded_bn" in m.__dict__:
            del m.__dict__["_folded_bn"]
            m.__class__ = m.__class__.__mro__[1]


def folded(model: nn.Module) -> int:
    """How many BatchNorm layers of `model` are folded."""
    return sum(isinstance(m, _FoldedAway) for m in model.modules())


def _first(out) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out
