"""Transfer-learning policies: which part of a pretrained network trains, as one object.

    full            every parameter trains (the pretrained ones optionally at a lower lr)
    last:a,b        only the named modules train (e.g. `last:layer4,fc`); the classifier must be one
    head            a new classifier for the new classes; everything else frozen
    head+           the original classifier is kept (frozen) and a new Linear(original outputs,
                    num_classes) is stacked on it; only that new layer trains

Frozen parts run in eval mode even while the model trains: their BatchNorm running statistics
and dropout stay as they were (`set_train_mode`). In `head` and `head+` the frozen part is a fixed
function of the image, so the engine can run it once per image and train on cached features
(`backbone_and_head`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.heads import stacked_head_name

MODES = ("full", "last", "head", "head+")


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
