"""Layer 4: `imgcls serve` — a local web page and JSON API over a trained model (uses inference/ only).

FastAPI and uvicorn come with the `serve` extra (`pip install 'imgcls[serve]'`); importing this package
does not need them, so `imgcls --help` works without it. The names below are imported when first used
(imgcls.lazy).
"""
from imgcls.lazy import lazy_exports

__all__ = lazy_exports(__name__, {"imgcls.serve.options": ["ServeOptions"],
                                  "imgcls.serve.service": ["BoundedPool", "Busy", "ModelService", "open_model"]})
