"""Layer 3: a trained model as a portable, fast file — ONNX export verified against PyTorch, static int8
quantization, and the ONNX Runtime runner that Predictor and `imgcls eval` use for .onnx files.
Never imports engine/ or inference/ (inference/ imports this package's session module)."""
from imgcls.export.graph import OPSET
from imgcls.export.onnx import ExportResult, export_onnx
from imgcls.export.options import ExportOptions
from imgcls.export.session import OrtRunner, decode_metadata, default_threads, make_session

__all__ = ["OPSET", "ExportOptions", "ExportResult", "OrtRunner", "decode_metadata", "default_threads", "export_onnx",
           "make_session"]
