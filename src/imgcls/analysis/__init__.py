"""Layer 2: looking inside models — the per-layer summary table, FLOPs, output-size arithmetic."""
from imgcls.analysis.summary import LayerRow, ModelSummary, conv_output_size, summarize

__all__ = ["LayerRow", "ModelSummary", "conv_output_size", "summarize"]
