"""Checkpoints, the file format every layer above reads: written atomically, read without unpickling code,
and rebuilt into the network they describe without the training code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(path, weights_only=True)` reads it:

    format, imgcls_version      "imgcls-checkpoint", the version that wrote it
    arch                        {"model", "num_classes", "model_kwargs", "head", "base_classes"}:
                                what `build_model` needs (heads: models/heads.py); "transfer" too
    model                       the state dict
    classes, preprocessing      class names in index order; eval resize/crop/mean/std/interpolation
                                (data.Preprocessing.to_dict(), checked on reading by from_dict)
    task, labels                "classification", "multilabel" or "segmentation" (none: classification); segmentation's
                                {"void", "palette"} of its masks
    config                      the run's resolved Config as a dict
    calibration                 what the end of training fitted on the val part (Calibration): the temperature
                                predicting divides logits by, the abstain threshold of each stated precision
                                (a multi-label run: each class's threshold); absent from older checkpoints (T = 1)
    optimizer, scheduler, scaler, epoch, epoch_step, global_step, rng, best, patience_left, history,
    threads, data_files         what `--resume` needs to continue bit-for-bit on CPU (engine/)

What predicts reads a checkpoint, or a registry weights name, as a `ModelSource` (load_source).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls import paths
from imgcls.data.preprocessing import Preprocessing
from imgcls.errors import CheckpointError, WeightsError
from imgcls.models.heads import head_of, stack_head

FORMAT = "imgcls-checkpoint"
# what to do with a plain state dict, for the commands that take one (train); export says it its way
PLAIN_STATE_DICT_HINT = "a plain state dict? pass it as --weights"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to a temporary file beside `path`, flush it to disk, then rename over `path`:
    a crash leaves either the old checkpoint or the new one, never half of one.

    The temporary name carries the writer's process id, so the temporary files that a killed writer
    left behind are recognised and removed at the next save in that folder (`remove_stale_temps`).
    A full disk is one CheckpointError that says the previous checkpoint is intact.
    """
    from imgcls import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    state = {"format": FORMAT, "imgcls_version": __version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=paths.temp_prefix(path), suffix=paths.TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        full = _os_error(e)
        if full is not None:
            kept = f"the previous {path.name} is intact" if path.is_file() else f"no {path.name} was written"
            raise CheckpointError(f"{path}: cannot write the checkpoint: {full.strerror or full} "
                                  f"({shutil.disk_usage(path.parent).free / 2**20:.0f} MB free there); {kept}; "
                                  "free some space, then continue with --resume") from None
        raise
    return path


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind `e` (torch wraps a failed write in a RuntimeError), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary checkpoint files (`.NAME.ckpt.PID.XXXX.tmp`) whose writer is no longer running:
    what a save interrupted by kill -9 leaves (paths.remove_stale_temps)."""
    return paths.remove_stale_temps(folder, ".ckpt")


def load_checkpoint(path: str | Path, *, plain_hint: str = PLAIN_STATE_DICT_HINT) -> dict[str, Any]:
    """The checkpoint's dict, read without running code; `plain_hint` is what the message about a file
    that is not an imgcls checkpoint (a plain state dict) advises, in the caller's flags."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        from imgcls.weights import unreadable_reason

        raise CheckpointError(f"{path}: not a checkpoint imgcls can read: {unreadable_reason(path, e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an imgcls checkpoint ({plain_hint})")
    return state


def describe_arch(arch: dict[str, Any]) -> str:
    return f"{arch['model']} with {arch['num_classes']} classes"


def check_arch(state: dict[str, Any], path: str | Path, *, model: str | None = None,
               num_classes: int | None = None) -> None:
    """One-line CheckpointError when a checkpoint is for another model or class count."""
    arch = state["arch"]
    if (model is not None and arch["model"] != model) or (num_classes is not None and arch["num_classes"] != num_classes):
        want = f"{model or arch['model']} with {num_classes if num_classes is not None else arch['num_classes']} classes"
        raise CheckpointError(f"{path}: checkpoint is for {describe_arch(arch)}, not {want}; "
                              f"pick the matching --model/data or start a new run")


def build_model(arch: dict[str, Any]) -> nn.Module:
    """The network a checkpoint's `arch` describes, freshly initialised (a stacked head included)."""
    from imgcls.weights import create_network

    stacked = head_of(arch) == "stacked"
    model = create_network(arch["model"], arch["base_classes"] if stacked else arch["num_classes"],
                           arch.get("model_kwargs"))
    return stack_head(model, arch["num_classes"]) if stacked else model


def load_model(path: str | Path, *, plain_hint: str = PLAIN_STATE_DICT_HINT) -> tuple[nn.Module, dict[str, Any]]:
    """(the network with the checkpoint's weights, the checkpoint): all that predicting, evaluating or
    exporting needs, with nothing from the training code."""
    state = load_checkpoint(path, plain_hint=plain_hint)
    return _network(state, path), state


def _network(state: dict[str, Any], path: str | Path) -> nn.Module:
    from imgcls.weights import load_strict

    model = build_model(state["arch"])
    try:
        # a run with --ema-decay saves the averaged weights beside the raw ones; they are what it chose best by
        load_strict(model, state.get("model_ema", state["model"]), source=str(path), target=describe_arch(state["arch"]))
    except WeightsError as e:
        raise CheckpointError(str(e)) from None
    return model


ONNX_SUFFIX = ".onnx"
_MODEL_FILE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin", ".safetensors", ONNX_SUFFIX)


def source_kind(source: str | Path) -> str:
    """What a model source is: "checkpoint" (an imgcls checkpoint file), "onnx" (an exported file) or
    "weights" (a registry name such as efficientnet_lite0.in1k). The file decides, not its name: a
    PyTorch file (a zip archive or a pickle) is a checkpoint whatever it is called, any other file
    named .onnx is read as ONNX. A missing file or an unknown name is a one-line error naming both."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{source}: is a folder; pass a checkpoint (e.g. runs/exp1/best.ckpt), an exported "
                              ".onnx file or a weights name")
    if path.is_file():
        from imgcls.weights import is_torch_file

        with open(path, "rb") as f:
            torch_file = is_torch_file(f.read(4))
        return "onnx" if path.suffix.lower() == ONNX_SUFFIX and not torch_file else "checkpoint"
    if isinstance(source, Path) or path.suffix.lower() in _MODEL_FILE_SUFFIXES or "/" in str(source):
        raise CheckpointError(f"{source}: no such checkpoint or ONNX file")
    from imgcls.weights import get_weight_spec

    try:
        get_weight_spec(str(source))
    except WeightsError as e:
        raise CheckpointError(f"{source}: no such checkpoint or ONNX file, and {e}") from None
    return "weights"


@dataclass(frozen=True)
class Calibration:
    """How far a model's probabilities can be trusted, as fitted on its val part at the end of training
    (reports.calibration.calibration_record): softmax(logits / temperature) are its probabilities, and
    `abstain` maps a stated precision ("0.99") to the lowest top-1 probability at which the val part's
    answers were that precise (None: never). A model without a record has temperature 1 and no table."""

    temperature: float = 1.0
    abstain: dict[str, float | None] = field(default_factory=dict)
    fitted_on: int = 0  # val images
    ece_before: float | None = None
    ece_after: float | None = None
    thresholds: tuple[float, ...] | None = None  # multi-label: each class's threshold on its sigmoid (None: 0.5)

    @classmethod
    def from_dict(cls, d: Any, *, where: str | Path, what: str = "calibration", fix: str = "") -> Calibration:
        """A record as checkpoints and exported files store it, every field checked (None: no record);
        a bad one is one CheckpointError naming `where` and the field."""
        if d is None:
            return cls()

        def bad(field_: str, value: Any, want: str) -> CheckpointError:
            named = f"{what} {field_}" if field_ else what
            return CheckpointError(f"{where}: {named} {value!r}: {want}" + (f"; {fix}" if fix else ""))

        if not isinstance(d, dict):
            raise bad("", d, "must be a mapping")
        t = d.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf"):
            raise bad("temperature", t, "must be a positive number")
        table = d.get("abstain") or {}
        if not isinstance(table, dict):
            raise bad("abstain", table, "must map precisions to thresholds")
        for p, thr in table.items():
            if not isinstance(p, str) or (thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float))
                                                               or not 0 <= thr <= 1)):
                raise bad("abstain", {p: thr}, "must map a precision to a probability in [0, 1] or null")
        ece = {k: d.get(k) for k in ("ece_before", "ece_after")}
        thresholds = d.get("thresholds")
        if thresholds is not None and (not isinstance(thresholds, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in thresholds)):
            raise bad("thresholds", thresholds, "must be a list of one probability in [0, 1] per class")
        return cls(float(t), {p: None if v is None else float(v) for p, v in table.items()},
                   int(d.get("fitted_on") or 0), *(None if v is None else float(v) for v in ece.values()),
                   None if thresholds is None else tuple(float(x) for x in thresholds))

    def to_dict(self) -> dict[str, Any]:
        out = {"temperature": self.temperature, "abstain": dict(self.abstain), "fitted_on": self.fitted_on,
               "ece_before": self.ece_before, "ece_after": self.ece_after}
        return out if self.thresholds is None else {**out, "thresholds": list(self.thresholds)}

    def thresholds_for(self, n: int, where: str | Path) -> list[float]:
        """A multi-label model's per-class thresholds (0.5 each without a record); a record for another number
        of classes is a CheckpointError naming `where`."""
        if self.thresholds is None:
            return [0.5] * n
        if len(self.thresholds) != n:
            raise CheckpointError(f"{where}: calibration thresholds has {len(self.thresholds)} values for {n} classes; "
                                  f"{CHANGED_CHECKPOINT}")
        return list(self.thresholds)

    @property
    def fitted(self) -> bool:
        return self.fitted_on > 0


@dataclass(frozen=True)
class ModelSource:
    """A model ready to predict with, whatever it came from (`source_kind` decided what it is, once:
    load_source for a checkpoint or a weights name, imgcls.inference.open_source for those and .onnx files):

    kind            "checkpoint", "weights" (a registry name: the 1000 ImageNet classes) or "onnx"
    name            the checkpoint's or exported file's path, or the weights' registered name
    classes         the class names, in logit order
    preprocessing   the eval preprocessing the model was trained or measured with
    arch            what rebuilds the network (checkpoint.build_model); an exported file's recorded one, or None
    network         the PyTorch network in eval mode (None for an exported file)
    runner          an exported file's runner (export.OrtRunner: normalised float NCHW batch -> logits)
    best            a checkpoint's best validation record (top1, epoch); empty for the others
    task            what the model predicts: "classification" or "segmentation" (a checkpoint's "task")
    labels          segmentation: {"void", "palette"} of the masks it was trained on; empty otherwise
    calibration     the temperature and abstain thresholds fitted on val (T = 1 and none when not fitted)
    """

    kind: str
    name: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    arch: dict[str, Any] | None
    network: nn.Module | None = None
    runner: Callable[[torch.Tensor], torch.Tensor] | None = None
    best: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    calibration: Calibration = field(default_factory=Calibration)
    labels: dict[str, Any] = field(default_factory=dict)


# the fix for a checkpoint whose fields are not what imgcls train writes
CHANGED_CHECKPOINT = "it was changed after imgcls train wrote it; use a checkpoint as train wrote it"


def checkpoint_source(path: str | Path, *, plain_hint: str = PLAIN_STATE_DICT_HINT) -> ModelSource:
    """A checkpoint as a ModelSource; its preprocessing is checked before the network is built (a field
    changed since imgcls train wrote it is one line naming the file and the field)."""
    state = load_checkpoint(path, plain_hint=plain_hint)
    pre = Preprocessing.from_dict(state.get("preprocessing"), where=path, fix=CHANGED_CHECKPOINT)
    return ModelSource("checkpoint", str(path), tuple(state["classes"]), pre, state["arch"],
                       network=_network(state, path).eval(), best=dict(state.get("best") or {}),
                       calibration=Calibration.from_dict(state.get("calibration"), where=path, fix=CHANGED_CHECKPOINT),
                       task=state.get("task", "classification"), labels=dict(state.get("labels") or {}))


def weights_source(name: str) -> ModelSource:
    """Registered weights as a ModelSource: the model they are for, with the spec's classes (ImageNet's 1000,
    or VOC's 21 for torchvision's segmentation weights: then task "segmentation", void 255 and the VOC
    palette, so predict, eval and serve treat them as the mask models they are) and its preprocessing."""
    from imgcls.data.masks import voc_classes
    from imgcls.models.registry import task_of
    from imgcls.weights import build_pretrained, get_weight_spec, read_state_dict, resolve_weights, spec_categories

    spec = get_weight_spec(name)
    arch = {"model": spec.arch, "num_classes": spec.num_classes, "model_kwargs": dict(spec.model_kwargs),
            "weights": spec.name}
    state, _ = read_state_dict(resolve_weights(spec))
    network = build_pretrained(arch, state, source=spec.name, strict=True, target=describe_arch(arch)).model
    task = task_of(spec.arch)
    labels = voc_classes().to_dict() if task == "segmentation" else {}
    return ModelSource("weights", spec.name, tuple(spec_categories(spec)), spec.preprocessing, arch,
                       network=network.eval(), task=task, labels=labels)


def load_source(source: str | Path, *, plain_hint: str = PLAIN_STATE_DICT_HINT) -> ModelSource:
    """A checkpoint or a registry weights name as a ModelSource (`source_kind` decides, once). An .onnx
    file is not a network: imgcls.inference.open_source opens it for predicting, and export refuses it.
    `plain_hint`: see load_checkpoint."""
    kind = source_kind(source)
    if kind == "onnx":
        raise CheckpointError(f"{source}: an exported ONNX file, not a checkpoint or weights name; export "
                              "from the checkpoint it came from (predict and eval take the .onnx as it is)")
    return checkpoint_source(source, plain_hint=plain_hint) if kind == "checkpoint" else weights_source(str(source))
