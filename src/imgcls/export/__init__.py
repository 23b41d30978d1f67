"""Layer 3: a trained model as a portable, fast file — ONNX export verified against PyTorch, static int8
quantization, and the ONNX Runtime runner that Predictor and `imgcls eval` use for .onnx files.
Never imports engine/ or inference/ (inference/ imports this package's session module). The names
below are imported when first used (imgcls.lazy)."""
from imgcls.lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "imgcls.export.graph": ["OPSET"],
    "imgcls.export.onnx": ["ExportResult", "export_onnx"],
    "imgcls.export.options": ["ExportOptions"],
    "imgcls.export.session": ["OrtRunner", "decode_metadata", "default_threads", "make_session"]})
