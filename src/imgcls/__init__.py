"""imgcls: image classifiers from the classic CNN papers, with transfer learning as the everyday job."""
from imgcls.errors import CheckpointError, ConfigError, DataError, ImgclsError, WeightsError
from imgcls.models import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "ImgclsError", "ConfigError", "DataError",
           "WeightsError", "CheckpointError", "__version__"]
