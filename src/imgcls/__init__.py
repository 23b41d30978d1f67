"""imgcls: image classifiers from the classic CNN papers, with transfer learning as the everyday job."""
from imgcls.errors import CheckpointError, ConfigError, DataError, ExportError, ImgclsError, WeightsError
from imgcls.models import list_models, register_model
from imgcls.weights import create_model_with_weights as create_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "ImgclsError", "ConfigError", "DataError",
           "WeightsError", "CheckpointError", "ExportError", "__version__", "train", "Config", "Predictor"]

_LAZY = {"train": "imgcls.engine", "Config": "imgcls.engine", "Predictor": "imgcls.inference"}


def __getattr__(name: str):
    """`imgcls.train`, `imgcls.Config`, `imgcls.Predictor` without importing the engine up front."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imgcls' has no attribute {name!r}")
