"""The model registry: a plain dict of builders and a decorator that refuses duplicates."""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from torch import nn

from imgcls.errors import ConfigError

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


def create_model(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Build a registered model, freshly initialised. Loading weights is layer 2's job:
    `imgcls.create_model(name, num_classes, weights=...)` (`imgcls.weights.create_model_with_weights`)."""
    if "weights" in kwargs:
        raise TypeError("imgcls.models.create_model builds untrained models; load weights with "
                        "imgcls.create_model(name, weights=...) or imgcls.weights.load_weights(model, ...)")
    return get_builder(name)(num_classes=num_classes, **kwargs)
