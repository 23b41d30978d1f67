"""Layer 1 of imgcls: pure nn.Modules and the registry; importing this registers every model."""
from imgcls.models import (  # noqa: F401  (registers the builders)
    alexnet, densenet, googlenet, lenet, mobilenet, resnet, vgg, vit,
)
from imgcls.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
