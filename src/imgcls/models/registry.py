"""The model registry: a plain dict of builders and a decorator that refuses duplicates."""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from imgcls.errors import ConfigError, WeightsError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _MODELS:
        raise RuntimeError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def register_variant(name: str, doc: str, namespace: dict) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator for a builder made per row of a model table: names it `name`, gives it `doc`,
    registers it and binds it in `namespace` (the defining module's globals())."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = doc
        namespace[name] = register_model(fn)
        return fn

    return decorate


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


def create_model(name: str, num_classes: int = 1000, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered model; `weights` is a torchvision-format state-dict file loaded strictly.

    A model with a `remap_state_dict(state_dict)` method gets the file's state dict through it
    first (DenseNet: legacy key names; ViT: position embeddings resized to its image size), as in
    `imgcls.weights.load_pretrained`.
    """
    model = get_builder(name)(num_classes=num_classes, **kwargs)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: no such weight file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        remap = getattr(model, "remap_state_dict", None)
        if callable(remap):
            state = remap(dict(state))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
            raise WeightsError(f"{path}: does not fit {name} with num_classes={num_classes}: {first}") from None
    return model
