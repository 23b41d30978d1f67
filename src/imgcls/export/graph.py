"""A module written as an ONNX graph: the exporter's settings (opset, input and output names, quiet
logging), `to_onnx`, the temporary names files are written under before they are verified, and
`OrtFunction` (a module run by ONNX Runtime through a private temporary file). Both export_onnx (fp32)
and quantize (int8) build on it; it imports neither.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from imgcls.errors import ExportError, summary_of
from imgcls.export.session import make_session, require, run_session
from imgcls.models.seg_parts import padded_forward
from imgcls.paths import TEMP_SUFFIX, temp_prefix

OPSET = 18
INPUT, OUTPUT = "input", "logits"


@contextmanager
def quiet_exporter():
    """torch.onnx logs a line per missing torchvision op and warns about deprecated pytree calls: noise
    to a user exporting a plain CNN."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    # ONNX Runtime's quantizer warns through the root logger (logging.warning: "Axis 1 is out-of-range for
    # weight ..." per depthwise layer), which configures a root handler when there is none, after which
    # every imgcls log line printed twice; a NullHandler for the while keeps the root logger as it was
    root = logging.getLogger()
    null = logging.NullHandler() if not root.handlers else None
    if null is not None:
        root.addHandler(null)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if null is not None:
            root.removeHandler(null)


class ScoresOnly(torch.nn.Module):
    """A segmentation model as the exported graph runs it: the "out" class scores [N, C, H, W] only (the
    auxiliary head is a training aid; leaving it out of the graph leaves its work out of every run), on the
    photo padded to whole stride-32 cells and cropped back (models.seg_parts.padded_forward): the file
    scores a photo of any size as imgcls does."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = padded_forward(self.model, x)
        return out["out"] if isinstance(out, dict) else out


def to_onnx(model: torch.nn.Module, path: Path, *, input_size: int, metadata: dict[str, str],
            spatial: bool = False) -> None:
    """Write `model` (eval mode) as ONNX with a dynamic batch axis and `metadata` in its properties.
    `spatial`: a segmentation model (ScoresOnly), whose height and width are dynamic too: every photo
    runs at its own resized size, as in PyTorch. The example is not square, so that the exporter does
    not take height and width for one size."""
    require("onnxscript")
    onnx = require("onnx")
    example = torch.zeros(2, 3, input_size, input_size + (32 if spatial else 0))
    dims: dict[int, Any] = {0: torch.export.Dim("batch")}
    if spatial:
        model = ScoresOnly(model)
        dims |= {2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    try:
        with quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(model.eval(), (example,), dynamo=True, opset_version=OPSET,
                                        input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=(dims,),
                                        external_data=False, verbose=False)
            program.optimize()
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; one line says which step failed
        raise ExportError(f"torch.onnx.export could not export {type(model).__name__}: {summary_of(e)}") from None
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"imgcls export of {metadata.get('source', '')}"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path))


def available() -> bool:
    """True when the export extra is installed (onnx, onnxscript, onnxruntime): what `OrtFunction` needs."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


class OrtFunction:
    """A module run by ONNX Runtime instead of PyTorch eager: exported (dynamic batch, fixed
    `input_size`) to a private temporary file, loaded into a session, the file removed. Float NCHW
    batch in, float tensor out, on the CPU; no metadata, nothing kept on disk. The trainer uses it for
    the frozen backbone of head-only transfer, which it runs once over every image: ONNX Runtime runs
    EfficientNet-Lite0 about 4x and ResNet-18 about 1.8x faster than eager PyTorch on a CPU
    (benchmarks/inference.py). An ExportError or ConfigError when the module cannot be exported."""

    backend = "onnxruntime"

    def __init__(self, module: torch.nn.Module, *, input_size: int, threads: int | None = None) -> None:
        with tempfile.TemporaryDirectory(prefix="imgcls-ort-") as d:
            path = Path(d) / "module.onnx"
            to_onnx(module, path, input_size=input_size, metadata={})
            self.session = make_session(path, threads=threads)
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return run_session(self.session, self._input, x)


def temp_path(out: Path, tag: str) -> Path:
    """A new empty temporary file beside `out`, `.NAME.PID.TAG.RANDOM.tmp` (paths.temp_prefix)."""
    fd, name = tempfile.mkstemp(prefix=f"{temp_prefix(out)}{tag}.", suffix=TEMP_SUFFIX, dir=out.parent)
    os.close(fd)
    return Path(name)
