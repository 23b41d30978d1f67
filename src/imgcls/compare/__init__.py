"""Layer 4: `imgcls compare DATA` — which network to ship, measured on the user's photos and CPU: each
candidate trained the cheapest good way within a time budget, then its accuracy, size, MACs and latency
under PyTorch eager, ONNX Runtime fp32 and int8 tabulated, plotted and turned into a recommendation.
The names below are imported when first used (imgcls.lazy): the options load without torch."""
from imgcls.lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "imgcls.compare.options": ["CompareOptions"],
    "imgcls.compare.run": ["CompareResult", "compare"]})
