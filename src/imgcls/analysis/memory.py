"""What one training step of a model holds in memory, measured once on the meta device.

A step holds the tensors autograd saves for backward (the activations of the layers that train),
plus, at the busiest layer, an input and an output (or, in backward, their gradients) at once;
both grow with the input's pixels. Parameters, their gradients and the optimizer's state do not.
`step_profile` runs the model once on the meta device (shapes only: no memory, no arithmetic) at
a small side and records these; `StepProfile.step_bytes` scales them to any side and batch, so a
size flag is checked in milliseconds without building anything at that size.

The estimate follows a real step on the CPU to within about 15% (tests/analysis/test_memory.py
compares it with the peak resident memory of one SGD step); tensors the allocator keeps around,
the data loader and the framework itself come on top.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# BatchNorm in training mode needs two values per channel: a batch of 2 at the model's smallest side
_PROBE_BATCH = 2


@dataclass(frozen=True)
class StepProfile:
    """Bytes of one training step, per image at `side` px in fp32 (`saved`, `busiest`) and fixed."""

    side: int
    saved: float  # kept for backward per image
    busiest: float  # the largest layer's input + output per image
    params: int  # every parameter
    trained: int  # the parameters that train (each has a gradient and optimizer state)

    def step_bytes(self, side: int, batch: int, *, activation_bytes: int = 4, optimizer_states: int = 1) -> float:
        """One step at `side` px with `batch` images; activations in `activation_bytes` per element
        (2 under bf16/fp16 autocast), `optimizer_states` tensors per trained parameter (SGD momentum 1, AdamW 2)."""
        return batch * self.image_bytes(side, activation_bytes=activation_bytes) + self.fixed_bytes(optimizer_states)

    def image_bytes(self, side: int, *, activation_bytes: int = 4) -> float:
        """What one more image in the batch adds to a step at `side` px."""
        return (self.saved + self.busiest) * (side / self.side) ** 2 * activation_bytes / 4

    def fixed_bytes(self, optimizer_states: int = 1) -> int:
        """Weights, gradients and optimizer state: the part of a step no size or batch changes."""
        return self.params + self.trained * (1 + optimizer_states)


def step_profile(model: nn.Module, side: int) -> StepProfile:
    """Profile `model` (on the meta device, in the train mode and with the `requires_grad` flags of the
    run: frozen layers save nothing) on a `side` x `side` input. Raises whatever the model raises for
    an input it does not take."""
    params = {id(p) for p in model.parameters()}
    saved: dict[int, torch.Tensor] = {}  # by storage owner: a saved view keeps its whole base alive

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t if t._base is None else t._base
        if id(base) not in params:
            saved[id(base)] = base
        return t

    busiest = 0

    def watch(module: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal busiest
        tensors = {id(t): t for t in (*inputs, output) if isinstance(t, torch.Tensor)}  # in place: counted once
        busiest = max(busiest, sum(_nbytes(t) for t in tensors.values()))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(watch) for m in leaves]
    x = torch.zeros(_PROBE_BATCH, 3, side, side, device="meta")
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return StepProfile(side=side, saved=sum(_nbytes(t) for t in saved.values()) / _PROBE_BATCH,
                       busiest=busiest / _PROBE_BATCH, params=sum(_nbytes(p) for p in model.parameters()),
                       trained=sum(_nbytes(p) for p in model.parameters() if p.requires_grad))


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
