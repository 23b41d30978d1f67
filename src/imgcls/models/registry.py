"""The model registry: a plain dict of builders and a decorator that refuses duplicates."""
from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable

from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.base import Paper

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _MODELS:
        raise RuntimeError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; `pattern` is a shell-style filter such as 'resnet*'."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


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


def create_model(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Build a registered model, freshly initialised. Loading weights is layer 2's job:
    `imgcls.create_model(name, num_classes, weights=...)` (`imgcls.weights.create_model_with_weights`)."""
    if "weights" in kwargs:
        raise TypeError("imgcls.models.create_model builds untrained models; load weights with "
                        "imgcls.create_model(name, weights=...) or imgcls.weights.load_weights(model, ...)")
    return get_builder(name)(num_classes=num_classes, **kwargs)
