"""Layer 4: `imgcls serve` — a local web page and JSON API over a trained model (uses inference/ only).

FastAPI and uvicorn come with the `serve` extra (`pip install 'imgcls[serve]'`); importing this package
does not need them, so `imgcls --help` works without it.
"""
from imgcls.serve.options import ServeOptions
from imgcls.serve.service import BoundedPool, Busy, ModelService, open_model

__all__ = ["BoundedPool", "Busy", "ModelService", "ServeOptions", "open_model"]
