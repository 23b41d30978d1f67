"""The model registry: a plain dict of builders and a decorator that refuses duplicates.

Each builder is registered for one task: "classification" (logits [N, classes]) unless the
decorator says otherwise (`@register_model(task="segmentation")`: a dict of [N, classes, H, W]
maps). `list_models()` lists the classifiers, what every classification command and test
iterates over; `list_models(task="segmentation")` the others, `task=None` all.
"""
from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable

from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.base import Paper

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_TASKS: dict[str, str] = {}
TASKS = ("classification", "segmentation")

Builder = Callable[..., nn.Module]


def register_model(fn: Builder | None = None, *,
                   task: str = "classification") -> Builder | Callable[[Builder], Builder]:
    """`@register_model` (a classifier) or `@register_model(task="segmentation")`."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")

    def add(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _MODELS:
            raise RuntimeError(f"model {name!r} is registered twice")
        _MODELS[name], _TASKS[name] = builder, task
        return builder

    return add(fn) if fn is not None else add


def list_models(pattern: str | None = None, *, task: str | None = "classification") -> list[str]:
    """Registered model names of `task` (None: every task), sorted; `pattern` is a shell-style filter
    such as 'resnet*'."""
    names = sorted(n for n in _MODELS if task is None or _TASKS[n] == task)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def task_of(name: str) -> str:
    """The task a registered model is built for: "classification" or "segmentation"."""
    get_builder(name)  # an unknown name gets the close-match error
    return _TASKS[name]


def get_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (see `imgcls models` or imgcls.list_models())") from None


def paper_of(name: str) -> Paper:
    """The paper of a registered model: the longest prefix of `name` in its family file's `PAPERS`."""
    papers: dict[str, Paper] = getattr(sys.modules[get_builder(name).__module__], "PAPERS", {})
    prefix = max((p for p in papers if name.startswith(p)), key=len, default=None)
    if prefix is None:
        raise KeyError(f"no paper recorded for {name!r}: add it to PAPERS in {get_builder(name).__module__}")
    return papers[prefix]


def create_model(name: str, num_classes: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model, freshly initialised; `num_classes=None` is the builder's default (1000
    for the classifiers, 21 for the segmentation models: Pascal VOC's). Loading weights is layer 2's job:
    `imgcls.create_model(name, num_classes, weights=...)` (`imgcls.weights.create_model_with_weights`)."""
    if "weights" in kwargs:
        raise TypeError("imgcls.models.create_model builds untrained models; load weights with "
                        "imgcls.create_model(name, weights=...) or imgcls.weights.load_weights(model, ...)")
    builder = get_builder(name)
    return builder(**kwargs) if num_classes is None else builder(num_classes=num_classes, **kwargs)
