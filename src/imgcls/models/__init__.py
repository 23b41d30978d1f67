"""Layer 1 of imgcls: pure nn.Modules and the registry; importing this registers every model.

Every module of this package is imported here, so a new family is one new file (its blocks, shared
ones from layers.py; its table; its PAPERS; one @register_model builder per row) and, when it has
pretrained weights, rows in the weights table (weights/specs.py).
"""
import importlib
import pkgutil

from imgcls.models.registry import create_model, list_models, register_model

for _info in pkgutil.iter_modules(__path__):  # the family files register their builders on import
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["create_model", "list_models", "register_model"]
