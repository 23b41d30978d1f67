"""`open_source(source)`: the one place that decides what a model source is (an imgcls checkpoint, a
registry weights name or a file written by `imgcls export`: checkpoint.source_kind, by the file's bytes)
and opens it as a `ModelSource`, once per command: the Predictor, `imgcls predict`, `eval`, `cam` and
`serve` all start here."""
from __future__ import annotations

from pathlib import Path

import torch

from imgcls.checkpoint import ModelSource, checkpoint_source, source_kind, weights_source


def open_source(source: str | Path, *, device: torch.device | None = None, threads: int | None = None) -> ModelSource:
    """`source` as a ModelSource: a checkpoint's or registered weights' network (in eval mode, on the CPU),
    or an exported .onnx file's ONNX Runtime runner, with `threads` intra-op threads, on CUDA when
    `device` is a CUDA device (the file's class names and preprocessing, and a segmentation model's task,
    void index and palette, come from its metadata)."""
    kind = source_kind(source)
    if kind == "checkpoint":
        return checkpoint_source(source)
    if kind == "weights":
        return weights_source(str(source))
    from imgcls.export.session import OrtRunner

    runner = OrtRunner(source, threads=threads, device=device if device is not None and device.type == "cuda" else None)
    meta = runner.metadata
    return ModelSource("onnx", str(source), tuple(meta["classes"]), meta["preprocessing"], meta["arch"], runner=runner,
                       calibration=meta["calibration"], task=meta["task"], labels=meta["labels"])
