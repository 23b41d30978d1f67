"""Running an exported file: ONNX Runtime sessions with sensible threads, the metadata imgcls writes
into every file, and `OrtRunner`, the ONNX twin of runtime.TorchRunner (normalised float NCHW batch
-> logits), through which Predictor and `imgcls eval` run .onnx files with their one code path.

The file is read by ONNX Runtime's protobuf parser, never unpickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.errors import CheckpointError, ConfigError, summary_of

INSTALL_HINT = "pip install 'imgcls[export]' (onnx, onnxscript, onnxruntime)"
FORMAT = "imgcls-onnx"
# metadata_props keys of an exported file; values are strings (JSON for the structured ones)
META_KEYS = ("format", "imgcls_version", "classes", "preprocessing", "arch", "source", "precision", "opset")


def require(module: str):
    """Import an optional dependency of the export extra, or a one-line ConfigError with the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed: ONNX export and inference need {INSTALL_HINT}") from None


def default_threads() -> int:
    """ONNX Runtime's intra-op threads: the count torch uses (the physical cores, or what the user set
    with torch.set_num_threads), so both backends get the same share of the machine."""
    return max(1, torch.get_num_threads())


def make_session(path: str | Path, *, threads: int | None = None, device: torch.device | None = None):
    """An InferenceSession of `path` with every graph optimisation, `threads` intra-op threads (one
    inter-op thread: a CNN is one chain of ops) and the CPU provider (CUDA's when `device` is CUDA
    and this onnxruntime build has it). An unreadable file is a one-line CheckpointError."""
    ort = require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not an ONNX model: it is an empty file (0 bytes)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"--device {device}: this onnxruntime has no CUDA provider; use --device cpu "
                              "(or pip install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own types for a damaged or foreign file
        raise CheckpointError(f"{path}: not an ONNX model ONNX Runtime can read ({summary_of(e, 120)}); "
                              "pass a file written by `imgcls export`") from None


def decode_metadata(props: dict[str, str], path: str | Path) -> dict[str, Any]:
    """The imgcls metadata of an exported file (classes, preprocessing, arch, ...) from its string
    properties; a file imgcls did not write is a one-line CheckpointError."""
    if props.get("format") != FORMAT or "classes" not in props or "preprocessing" not in props:
        raise CheckpointError(f"{path}: an ONNX model without imgcls's metadata (class names, preprocessing); "
                              "export it with `imgcls export CHECKPOINT -o model.onnx`")
    meta: dict[str, Any] = dict(props)
    for key in ("classes", "preprocessing", "arch"):
        meta[key] = json.loads(props[key]) if key in props else None
    return meta


def encode_metadata(*, classes: list[str], preprocessing: dict[str, Any], arch: dict[str, Any], source: str,
                    precision: str, opset: int) -> dict[str, str]:
    """The string properties `decode_metadata` reads back."""
    from imgcls import __version__

    return {"format": FORMAT, "imgcls_version": __version__, "classes": json.dumps(list(classes)),
            "preprocessing": json.dumps(preprocessing), "arch": json.dumps(arch), "source": str(source),
            "precision": precision, "opset": str(opset)}


class OrtRunner:
    """An exported file as a runner: normalised float NCHW batch -> logits [N, C] float on the CPU.

    `metadata` holds what the file says about itself (classes, preprocessing, arch, precision, the
    imgcls version that wrote it), so predicting needs only the file.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None, device: torch.device | None = None) -> None:
        self.path = Path(path)
        self.session = make_session(self.path, threads=threads, device=device)
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.device = torch.device("cpu")  # inputs go in as numpy arrays from the CPU
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return run_session(self.session, self._input, x)


def run_session(session, input_name: str, x: torch.Tensor) -> torch.Tensor:
    """A float NCHW batch through an InferenceSession with one input: its first output, float, on the CPU."""
    # the batch normaliser hands out a channels_last view: ORT wants plain contiguous NCHW
    batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    return torch.from_numpy(session.run(None, {input_name: batch})[0]).float()
