"""Transfer-learning policies: which part of a pretrained network trains, as one object.

    full            every parameter trains (the pretrained ones optionally at a lower lr)
    last:a,b        only the named modules train (e.g. `last:layer4,fc`); the classifier must be one
    head            a new classifier for the new classes; everything else frozen
    head+           the original classifier is kept (frozen) and a new Linear(original outputs,
                    num_classes) is stacked on it; only that new layer trains

Frozen parts run in eval mode even while the model trains: their BatchNorm running statistics
and dropout stay as they were (`set_train_mode`). In `head` and `head+` the frozen part is a fixed
function of the image, so the engine can run it once per image and train on cached features
(`backbone_and_head`). In `last:` so is the frozen prefix the forward runs before the first trainable
module: `find_split` finds it (one forward with hooks, no per-model code), `FrozenSplit.trunk` runs it
and `Tail` is the rest of the network, which takes its output map where the network took the image.
That holds only when nothing after the split reads an earlier activation (a skip connection across
it) and the forward does nothing between the prefix's modules: `split_network` also compares the two
paths' outputs, in the run's modes, before the engine relies on it.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from imgcls.errors import ConfigError, summary_of
from imgcls.models.heads import stacked_head_name

MODES = ("full", "last", "head", "head+")
SPLIT_TOLERANCE = 1e-4  # relative: the same operations on the same numbers, in another memory layout at most


@dataclass(frozen=True)
class TransferPolicy:
    mode: str = "full"
    modules: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> TransferPolicy:
        spec = (spec or "full").strip()
        if spec.startswith("last:"):
            names = tuple(n.strip() for n in spec[5:].split(",") if n.strip())
            if not names:
                raise ConfigError("--transfer last: needs module names, e.g. last:layer4,fc")
            return cls("last", names)
        if spec in ("full", "head", "head+"):
            return cls(spec)
        raise ConfigError(f"unknown --transfer {spec!r}; use full, last:<modules> (e.g. last:layer4,fc), head or head+")

    def __str__(self) -> str:
        return "last:" + ",".join(self.modules) if self.mode == "last" else self.mode

    @property
    def caches_features(self) -> bool:
        """True when the trained part reads a fixed function of the image (head, head+)."""
        return self.mode in ("head", "head+")

    def head_name(self, model: nn.Module) -> str:
        """The module the new classes are read from: the classifier, or the stacked layer for head+."""
        return stacked_head_name(model) if self.mode == "head+" else model.classifier_name

    def trainable_names(self, model: nn.Module) -> tuple[str, ...]:
        if self.mode == "full":
            return ("",)
        if self.mode == "last":
            known = {n for n, _ in model.named_modules() if n}
            for n in self.modules:
                if n not in known:
                    tops = ", ".join(n for n, _ in model.named_children())
                    raise ConfigError(f"--transfer last:{','.join(self.modules)}: the model has no module {n!r}; "
                                      f"its top-level modules are {tops}")
            cls_name = model.classifier_name
            if not any(cls_name == n or cls_name.startswith(n + ".") for n in self.modules):
                raise ConfigError(f"--transfer last:{','.join(self.modules)} leaves the classifier {cls_name!r} "
                                  f"frozen; add it, e.g. last:{','.join(self.modules)},{cls_name}")
            return self.modules
        return (self.head_name(model),)

    def apply(self, model: nn.Module) -> nn.Module:
        """Freeze everything outside the trainable modules; returns the model."""
        trainable = self.trainable_names(model)
        for name, p in model.named_parameters():
            p.requires_grad_(_inside(name, trainable))
        return model

    def set_train_mode(self, model: nn.Module, mode: bool = True) -> nn.Module:
        """model.train(mode), then eval mode for every module outside the trainable ones that holds no
        trainable parameter (frozen BatchNorm keeps its statistics; frozen dropout is off)."""
        model.train(mode)
        if not mode or self.mode == "full":
            return model
        trainable = self.trainable_names(model)
        for name, m in model.named_modules():
            if name and not _inside(name, trainable) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return model

    @contextmanager
    def backbone_and_head(self, model: nn.Module) -> Iterator[tuple[nn.Module, nn.Module]]:
        """(model whose trained head is an Identity, the head): features = backbone(x), logits = head(f)."""
        if not self.caches_features:
            raise ConfigError(f"--transfer {self} trains more than a head; there are no fixed features to cache")
        name = self.head_name(model)
        head = model.get_submodule(name)
        model._set_module(name, nn.Identity())
        try:
            yield model, head
        finally:
            model._set_module(name, head)


def _inside(name: str, roots: tuple[str, ...]) -> bool:
    return any(r == "" or name == r or name.startswith(r + ".") for r in roots)


# -- last: the frozen prefix and the trainable tail -----------------------------------------------

@dataclass(frozen=True)
class FrozenSplit:
    """Where `last:` splits a network: `names`, the frozen modules the forward runs before `first` (the
    first trainable module it runs), in call order, and `map_shape`, the shape of one image's map they
    hand on at the size it was found with."""

    names: tuple[str, ...]
    first: str
    map_shape: tuple[int, ...]

    def trunk(self, model: nn.Module) -> nn.Sequential:
        """The frozen prefix as one module (eval mode), sharing `model`'s modules: image -> map."""
        return nn.Sequential(*(model.get_submodule(n) for n in self.names)).eval()

    def describe(self) -> str:
        return self.names[0] if len(self.names) == 1 else f"{self.names[0]} .. {self.names[-1]}"


class Tail(nn.Module):
    """`model` after a FrozenSplit: a copy of its containers in which the prefix's modules are identities,
    so the forward takes the prefix's map where it took the image. Every other module, and so every
    parameter and buffer, is `model`'s own: training the tail trains the model. Its modes are `policy`'s
    (frozen modules after the split stay in eval mode)."""

    def __init__(self, model: nn.Module, split: FrozenSplit, policy: TransferPolicy) -> None:
        super().__init__()
        self.net = _without(model, frozenset(split.names))
        self.split, self.policy = split, policy

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def train(self, mode: bool = True) -> Tail:
        self.training = mode
        self.policy.set_train_mode(self.net, mode)
        return self


def _without(module: nn.Module, names: frozenset[str], prefix: str = "") -> nn.Module:
    """A shallow copy of `module` whose descendants in `names` are nn.Identity; the copy has its own
    child, parameter and buffer tables but holds the same objects, so nothing of `module` changes."""
    clone = copy.copy(module)
    clone._modules, clone._parameters, clone._buffers = {}, dict(module._parameters), dict(module._buffers)
    for name, child in module._modules.items():
        full = prefix + name
        if full in names:
            child = nn.Identity()
        elif child is not None and any(n.startswith(full + ".") for n in names):
            child = _without(child, names, full + ".")
        clone._modules[name] = child
    return clone


def find_split(model: nn.Module, policy: TransferPolicy, x: torch.Tensor) -> FrozenSplit | str:
    """The frozen prefix of `model` (in its current modes; a meta model will do) on input `x`, or why
    there is none. The prefix is what the forward runs before the first trainable module: the children
    of that module's ancestors that it called before it, in call order."""
    trainable = policy.trainable_names(model)
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[str, str]] = []  # ("start" | "end", module name) in call order
    first_input: list[Any] = []

    def pre(module: nn.Module, args: tuple) -> None:
        name = names[module]
        if not first_input and _inside(name, trainable) and name:
            first_input.append(args[0] if args else None)
        calls.append(("start", name))

    def post(module: nn.Module, args: tuple, out: Any) -> None:
        calls.append(("end", names[module]))

    handles = [h for m in names for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        with torch.no_grad(), _own_rng(x):
            model(x)
    finally:
        for h in handles:
            h.remove()
    first = next((n for what, n in calls if what == "start" and n and _inside(n, trainable)), None)
    if first is None:
        return f"none of {', '.join(trainable)} runs in the forward"
    at = calls.index(("start", first))
    parts = first.split(".")
    ancestors = {".".join(parts[:k]) for k in range(len(parts))}  # "" (the model) .. first's parent
    before = [n for what, n in calls[:at]
              if what == "start" and n not in ancestors and n.rpartition(".")[0] in ancestors]
    if not before:
        return f"nothing frozen runs before {first}"
    again = sorted({n for what, n in calls[at:] if what == "start" and _inside(n, tuple(before))})
    if again:
        return f"{again[0]} runs both before and after {first}"
    if not isinstance(first_input[0], torch.Tensor):
        return f"{first} does not take a tensor"
    return FrozenSplit(tuple(before), first, tuple(first_input[0].shape[1:]))


def split_network(model: nn.Module, policy: TransferPolicy, x: torch.Tensor) -> FrozenSplit | str:
    """`last:`'s split of `model` found (in the run's modes) and checked on `x`, or why there is none; on
    copies of `model`, which does not change."""
    net = policy.set_train_mode(copy.deepcopy(model))
    found = find_split(net, policy, x)
    return found if isinstance(found, str) else _check_split(net, policy, found, x) or found


def _own_rng(x: torch.Tensor) -> Any:
    """The random state of x's device put back afterwards: a probe's dropout uses up nothing of the run's."""
    return torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else [])


def _check_split(net: nn.Module, policy: TransferPolicy, split: FrozenSplit, x: torch.Tensor) -> str | None:
    """Why the trunk then the tail does not compute `net`'s outputs on `x` within SPLIT_TOLERANCE, in
    training mode (as `policy` trains it, dropout drawn alike) and in eval mode; None when it does.
    `net` is a copy: its trainable BatchNorm statistics move."""
    trunk, tail = split.trunk(net), Tail(net, split, policy)
    for training in (True, False):
        policy.set_train_mode(net, training)
        tail.train(training)
        with torch.no_grad(), _own_rng(x):
            torch.manual_seed(0)
            want = _tensors(net(x))
            try:
                maps = trunk(x)
                torch.manual_seed(0)
                got = _tensors(tail(maps))
            except Exception as e:  # noqa: BLE001 - any failure here means the modules are not a chain
                return (f"the modules up to {split.names[-1]} and the rest do not run as a chain "
                        f"({summary_of(e, 120)})")
        mode = "training" if training else "eval"
        if [t.shape for t in got] != [t.shape for t in want]:
            return f"the outputs in {mode} mode differ in shape"
        scale = max((t.abs().max().item() for t in want if t.numel()), default=0.0)
        diff = max((float((g.float() - w.float()).abs().max()) for g, w in zip(got, want) if w.numel()), default=0.0)
        rel = diff / max(scale, 1e-12)
        if not rel <= SPLIT_TOLERANCE:  # NaN fails too
            return (f"the outputs from {split.names[-1]}'s map differ from the network's in {mode} mode (max "
                    f"relative difference {rel:.1e} > {SPLIT_TOLERANCE:.0e}): something after the split reads an "
                    "earlier activation (a skip connection across it) or the forward transforms the input")
    return None


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, or a tuple / named tuple / dict of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    return [t for item in items for t in _tensors(item)]
