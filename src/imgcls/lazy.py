"""A package's public names, imported when first used (PEP 562's idea, through the module's class).

`imgcls`, `imgcls.engine`, `imgcls.inference`, `imgcls.export` and `imgcls.serve` name their public
functions and classes with `lazy_exports` instead of importing them, so importing a package costs nothing
until a name is read: `imgcls --help`, `imgcls.__version__` and the options dataclasses never import
torch, and `imgcls predict` never imports the training code. `from imgcls.engine import train` and
`imgcls.Predictor` work as before.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any


class LazyPackage(types.ModuleType):
    """A package module whose public names (`_lazy`: name -> (module, attribute)) are imported when first
    read; any other submodule is imported when read as an attribute, as an eager package would have."""

    def __getattr__(self, name: str) -> Any:  # called only for a name the package does not hold yet
        lazy = self.__dict__["_lazy"]
        if name in lazy:
            module, attribute = lazy[name]
            value = getattr(importlib.import_module(module), attribute)
        elif not name.startswith("__") and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            value = importlib.import_module(f"{self.__name__}.{name}")
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds every submodule it loads to the package attribute of that name. Where a
        # public name is also a submodule's (engine.fit and engine.plan, inference.evaluate), the name keeps
        # meaning the function whichever was imported first, as it did when the package imported it eagerly.
        if (isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}"
                and name in self.__dict__["_lazy"]):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__["_lazy"]})


def lazy_exports(package: str, exports: Mapping[str, Iterable[str | tuple[str, str]]]) -> list[str]:
    """Make `package` (its `__name__`, from its __init__) import each public name from its module when first
    read. `exports`: module -> names, each a name or (public name, the name in that module). Returns the
    public names, for `__all__`."""
    lazy = {}
    for module, names in exports.items():
        for name in names:
            public, attribute = (name, name) if isinstance(name, str) else name
            lazy[public] = (module, attribute)
    target = sys.modules[package]
    target.__dict__["_lazy"] = lazy
    target.__class__ = LazyPackage
    return list(lazy)
