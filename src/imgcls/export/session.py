"""Running an exported file: ONNX Runtime sessions with sensible threads, the metadata imgcls writes
into every file (checked once, when a file is opened: decode_metadata, check_graph), and `OrtRunner`,
the ONNX twin of runtime.TorchRunner (normalised float NCHW batch -> logits), through which
Predictor, `imgcls eval` and `imgcls serve` run .onnx files with their one code path.

The file is read by ONNX Runtime's protobuf parser, never unpickled.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.checkpoint import Calibration
from imgcls.data.preprocessing import Preprocessing
from imgcls.errors import CheckpointError, ConfigError, quoted, summary_of

INSTALL_HINT = "pip install 'imgcls[export]' (onnx, onnxscript, onnxruntime)"
FORMAT = "imgcls-onnx"
# metadata_props keys of an exported file; values are strings (JSON for the structured ones)
META_KEYS = ("format", "imgcls_version", "classes", "preprocessing", "arch", "source", "precision", "opset",
             "calibration", "task", "labels")
REQUIRED_KEYS = ("format", "classes", "preprocessing")  # the others are descriptions, checked when present
PRECISIONS = ("fp32", "int8")
TASKS = ("classification", "multilabel", "segmentation")  # a file without "task" (exported before it existed): classification
# the fix for a file whose metadata is not what export writes (changed after export, or another tool's)
REEXPORT = "export it again from its checkpoint (imgcls export CHECKPOINT -o FILE)"


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
    """The imgcls metadata of an exported file (classes, preprocessing as a data.Preprocessing, arch, ...)
    from its string properties, every field checked once, here: its type, its range (sizes within
    limits.MAX_SIDE) and that it is there. A file imgcls did not write, or one whose metadata was changed since, is a
    one-line CheckpointError naming the file and the field."""
    missing = [key for key in REQUIRED_KEYS if key not in props]
    if "format" in missing or props["format"] != FORMAT:
        found = f"no {', '.join(missing)}" if "format" in missing else f"format {quoted(props['format'])}"
        raise CheckpointError(f"{path}: an ONNX model without imgcls's metadata ({found}): it was not written by "
                              "`imgcls export`; export its checkpoint with `imgcls export CHECKPOINT -o model.onnx`")
    if missing:
        raise _altered(path, f"metadata has no {', '.join(missing)}")
    meta: dict[str, Any] = dict(props)
    for key in ("classes", "preprocessing", "arch", "calibration", "labels"):
        meta[key] = _json(props[key], key, path) if key in props else None
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _altered(path, f"metadata classes {quoted(classes)}: must be a non-empty list of class names (strings)")
    meta["preprocessing"] = Preprocessing.from_dict(meta["preprocessing"], where=path, what="metadata preprocessing",
                                                    fix=REEXPORT)
    arch = meta["arch"]
    if arch is not None and not (isinstance(arch, dict) and isinstance(arch.get("model"), str)):
        raise _altered(path, f"metadata arch {quoted(arch)}: must be an object naming the model")
    # the checkpoint's temperature and abstain thresholds; a file exported before they existed: T = 1
    meta["calibration"] = Calibration.from_dict(meta["calibration"], where=path, what="metadata calibration",
                                                fix=REEXPORT)
    if meta.get("precision", "fp32") not in PRECISIONS:
        raise _altered(path, f"metadata precision {quoted(meta['precision'])}: must be {' or '.join(PRECISIONS)}")
    meta["task"] = meta.get("task", "classification")
    if meta["task"] not in TASKS:
        raise _altered(path, f"metadata task {quoted(meta['task'])}: must be {', '.join(TASKS[:-1])} or {TASKS[-1]}")
    meta["labels"] = _labels(meta["labels"], meta["task"], path)
    return meta


def _labels(labels: Any, task: str, path: str | Path) -> dict[str, Any]:
    """A segmentation file's {"void": int, "palette": [[r, g, b], ...]} (what colours its masks), checked;
    {} for a classifier."""
    if task != "segmentation":
        return {}
    ok = (isinstance(labels, dict) and isinstance(labels.get("void"), int) and not isinstance(labels["void"], bool)
          and 0 <= labels["void"] <= 255 and isinstance(labels.get("palette"), list)
          and all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                  for c in labels["palette"]))
    if not ok:
        raise _altered(path, f"metadata labels {quoted(labels)}: a segmentation model needs its void index (0..255) "
                             "and its palette ([[r, g, b], ...])")
    return {"void": labels["void"], "palette": [list(c) for c in labels["palette"]]}


def check_graph(session, meta: dict[str, Any], path: str | Path) -> None:
    """One-line CheckpointError unless the graph takes what imgcls feeds it (one float [N, 3, crop, crop]
    batch, crop from the metadata) and gives one logit per class name (one [N, len(classes)] float); a
    segmentation model: one float [N, 3, H, W] batch (any H, W) in, [N, len(classes), H, W] scores out."""
    if meta.get("task") == "segmentation":
        return _check_dense_graph(session, meta, path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    crop, n = meta["preprocessing"].crop, len(meta["classes"])
    x = inputs[0] if len(inputs) == 1 else None
    if (x is None or x.type != "tensor(float)" or len(x.shape) != 4 or x.shape[1] != 3
            or any(isinstance(d, int) and d != crop for d in x.shape[2:])):
        takes = " and ".join(_described(i) for i in inputs) or "no input"
        raise _altered(path, f"the model takes {takes}, but its metadata (preprocessing.crop {crop}) says one "
                             f"image batch tensor(float) [N, 3, {crop}, {crop}]")
    y = outputs[0] if len(outputs) == 1 else None
    if y is None or y.type != "tensor(float)" or len(y.shape) != 2:
        gives = " and ".join(_described(o) for o in outputs) or "no output"
        raise _altered(path, f"the model gives {gives}, not one tensor(float) [N, classes] of logits")
    if y.shape[1] != n:
        raise _altered(path, f"metadata classes names {n} classes, but the model gives {y.shape[1]} logits per image")


def _check_dense_graph(session, meta: dict[str, Any], path: str | Path) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    x = inputs[0] if len(inputs) == 1 else None
    if x is None or x.type != "tensor(float)" or len(x.shape) != 4 or x.shape[1] != 3:
        takes = " and ".join(_described(i) for i in inputs) or "no input"
        raise _altered(path, f"the model takes {takes}, not one image batch tensor(float) [N, 3, H, W]")
    fixed = [d for d in x.shape[2:] if isinstance(d, int)]
    if fixed:  # imgcls exports segmentation models with dynamic height and width: photos keep their shape
        raise _altered(path, f"the model takes {_described(x)}: a fixed height or width, where a segmentation "
                             "export takes any [N, 3, H, W]")
    y = outputs[0] if len(outputs) == 1 else None
    if y is None or y.type != "tensor(float)" or len(y.shape) != 4:
        gives = " and ".join(_described(o) for o in outputs) or "no output"
        raise _altered(path, f"the model gives {gives}, not one tensor(float) [N, classes, H, W] of class scores")
    if y.shape[1] != len(meta["classes"]):
        raise _altered(path, f"metadata classes names {len(meta['classes'])} classes, but the model gives "
                             f"{y.shape[1]} scores per pixel")


def _json(text: str, key: str, path: str | Path) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise _altered(path, f"metadata {key} {quoted(text)} is not JSON ({summary_of(e, 60)})") from None


def _described(arg) -> str:
    """An ONNX Runtime input or output as `tensor(float) [batch, 3, 224, 224]`."""
    return f"{arg.type} [{', '.join(str(d) for d in arg.shape)}]"


def _altered(path: str | Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}; {REEXPORT}")


def written_by_export(path: str | Path) -> bool:
    """Whether `path` is an ONNX file whose metadata says `imgcls export` wrote it (its other fields are
    not checked: this is what `export -o` may replace)."""
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a file protobuf cannot parse is not an export
        return False
    return any(p.key == "format" and p.value == FORMAT for p in model.metadata_props)


def encode_metadata(*, classes: Sequence[str], preprocessing: Preprocessing, arch: dict[str, Any], source: str,
                    precision: str, opset: int, calibration: Calibration | None = None, task: str = "classification",
                    labels: dict[str, Any] | None = None) -> dict[str, str]:
    """The string properties `decode_metadata` reads back (a segmentation model's also "task" and "labels":
    its void index and palette)."""
    from imgcls import __version__

    tasked = {"task": task, "labels": json.dumps(labels or {})} if task != "classification" else {}
    return tasked | {"format": FORMAT, "imgcls_version": __version__, "classes": json.dumps(list(classes)),
            "preprocessing": json.dumps(preprocessing.to_dict()), "arch": json.dumps(arch), "source": str(source),
            "precision": precision, "opset": str(opset),
            "calibration": json.dumps((calibration or Calibration()).to_dict()), "task": task}


class OrtRunner:
    """An exported file as a runner: normalised float NCHW batch -> logits [N, C] float on the CPU.

    `metadata` holds what the file says about itself (classes, preprocessing, arch, precision, the
    imgcls version that wrote it), so predicting needs only the file; a file whose metadata or graph
    is not what export writes is refused here, before any image is read (decode_metadata, check_graph).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None, device: torch.device | None = None) -> None:
        self.path = Path(path)
        self.session = make_session(self.path, threads=threads, device=device)
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        check_graph(self.session, self.metadata, self.path)
        self.device = torch.device("cpu")  # inputs go in as numpy arrays from the CPU
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return run_session(self.session, self._input, x)


def run_session(session, input_name: str, x: torch.Tensor) -> torch.Tensor:
    """A float NCHW batch through an InferenceSession with one input: its first output, float, on the CPU."""
    # the batch normaliser hands out a channels_last view: ORT wants plain contiguous NCHW
    batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    return torch.from_numpy(session.run(None, {input_name: batch})[0]).float()
