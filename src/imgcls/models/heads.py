"""Heads a checkpoint records in its `arch`, so that a network is rebuilt from the file alone.

    linear    the family's own classifier with `num_classes` outputs (every model's default)
    stacked   head+ transfer: the pretrained classifier, kept at its `base_classes` outputs, with a
              new Linear(base_classes, num_classes) on top: Sequential(original, new). Its
              state-dict keys are `<classifier>.0.*` (the original) and `<classifier>.1.*`
"""
from __future__ import annotations

from typing import Any

from torch import nn

from imgcls.errors import ConfigError

HEADS = ("linear", "stacked")


def stack_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the model's Linear classifier by Sequential(that classifier, Linear(its outputs, num_classes))."""
    old = model.get_classifier()
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"head+ needs a Linear classifier; {model.classifier_name} is {type(old).__name__}")
    model._set_module(model.classifier_name, nn.Sequential(old, nn.Linear(old.out_features, num_classes)))
    model.num_classes = num_classes
    return model


def stacked_head_name(model: nn.Module) -> str:
    """The new layer of a stacked head: the module the new classes are read from."""
    return f"{model.classifier_name}.1"


def head_of(arch: dict[str, Any]) -> str:
    """The head an `arch` describes; checkpoints of imgcls 0.1.0 said it through transfer == "head+"."""
    head = arch.get("head") or ("stacked" if arch.get("transfer") == "head+" else "linear")
    if head not in HEADS:
        raise ConfigError(f"unknown head {head!r} in a checkpoint's arch; expected one of {HEADS}")
    return head
