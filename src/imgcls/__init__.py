"""imgcls: image classifiers from the classic CNN papers, with transfer learning as the everyday job."""
from imgcls.errors import CheckpointError, ConfigError, DataError, ExportError, ImgclsError, WeightsError
from imgcls.lazy import lazy_exports

__version__ = "0.1.0"
# imported when first used (imgcls.lazy): `import imgcls` and `imgcls.__version__` do not import torch
__all__ = ["ImgclsError", "ConfigError", "DataError", "WeightsError", "CheckpointError", "ExportError", "__version__",
           *lazy_exports(__name__, {"imgcls.weights.loader": [("create_model", "create_model_with_weights")],
                                    "imgcls.models": ["list_models", "register_model"],
                                    "imgcls.engine": ["train", "Config"],
                                    "imgcls.inference": ["Predictor"]})]
