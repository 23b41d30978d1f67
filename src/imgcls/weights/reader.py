"""The one safe reader of weight files: every layer that reads tensors from disk comes here.

`read_state_dict(path)` reads a plain torchvision state dict, an imgcls checkpoint, a Lightning
checkpoint or a safetensors file, safely (`weights_only=True`, never arbitrary unpickling), and
strips the `module.` (DDP) / `_orig_mod.` (torch.compile) prefixes. `unreadable_reason` says in
words why `torch.load(weights_only=True)` refused a file, without ever suggesting to turn the
safety check off (`imgcls.engine.checkpoint` uses it for checkpoints too).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from imgcls.errors import WeightsError, summary_of

# The keys under which known checkpoint formats keep the model's tensors: imgcls's own checkpoints
# ("model"), Lightning ("state_dict"), the PyTorch tutorials' habit ("model_state_dict").
_STATE_KEYS = ("model", "state_dict", "model_state_dict")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Only a prefix every key shares: a model may well have a submodule named `module`.
    while state:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise WeightsError(f"{path}: reading .safetensors files needs the safetensors package: "
                           "pip install safetensors") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError and OSErrors
        raise WeightsError(f"{path}: cannot read this safetensors file ({' '.join(str(e).split())})") from None
    return state, meta


def _pickle_imports(data: bytes) -> list[str]:
    """The `module.name` globals a pickle stream would import, read with pickletools (nothing runs)."""
    import pickletools

    names, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif op.name == "GLOBAL":
                names.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # noqa: BLE001 - a damaged stream: report what was read before the damage
        pass
    return names


def is_torch_file(head: bytes) -> bool:
    """Whether a file's first bytes are a PyTorch file's: torch.save's zip container or a bare pickle
    (protocol 2 and up start with 0x80)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of a torch file: data.pkl inside the zip container, or the file itself."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else b""
    return path.read_bytes()


_SAFE_MODULES = ("torch", "collections", "numpy", "builtins", "_codecs")


def unreadable_reason(path: Path, error: BaseException) -> str:
    """Why torch.load(weights_only=True) refused `path`, in words that never suggest turning the safety
    check off: an empty file, a pickle that would import and run code, or not a PyTorch file at all."""
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        return "it is an empty file (0 bytes)"
    with path.open("rb") as f:
        head = f.read(512)
    if not is_torch_file(head):
        text = head.lstrip().lower()
        kind = ("an HTML page" if text.startswith((b"<!doctype html", b"<html")) else
                "text" if all(32 <= c < 127 or c in (9, 10, 13) for c in head) else "binary data of another kind")
        return f"it is {kind}, not a PyTorch weights file"
    try:
        imports = _pickle_imports(_pickle_bytes(path))
    except Exception:  # noqa: BLE001 - a damaged container
        imports = []
    code = [n for n in imports if not n.startswith(_SAFE_MODULES)]
    if code:
        return (f"it would import and run code ({', '.join(sorted(set(code))[:3])}); imgcls refuses to run code "
                "from a weights file: re-save only the tensors, e.g. torch.save(model.state_dict(), path)")
    first = summary_of(error, limit=120)
    if "Weights only load failed" in first:
        first = "it holds objects other than tensors, numbers, strings, lists and dicts"
    return f"it is damaged or not a weights file imgcls can read safely ({first})"


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated zip (RuntimeError), an empty file (EOFError), a pickle ...
        raise WeightsError(f"{path}: cannot be read as weights: {unreadable_reason(path, e)}") from None


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The model tensors of a weight file and whatever else the file holds (its metadata).

    Reads `.safetensors` with safetensors, anything else with `torch.load(weights_only=True)`.
    A plain state dict comes back with `{}` as metadata; a checkpoint dict (imgcls: "model",
    Lightning: "state_dict") gives its state dict and the other entries ("meta", "config",
    "classes", "epoch", ...). A `module.` or `_orig_mod.` prefix shared by every key is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    else:
        obj = _read_torch(path)
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{path}: not a state dict (the file holds a {type(obj).__name__})")
        key = next((k for k in _STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        state = dict(obj[key]) if key else dict(obj)
        meta = {k: v for k, v in obj.items() if k != key} if key else {}
    if not state:
        raise WeightsError(f"{path}: the state dict is empty")
    bad = next((k for k, v in state.items() if not isinstance(k, str)
                or not (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))), None)
    if bad is not None:
        raise WeightsError(f"{path}: not a state dict: entry {bad!r} holds a {type(state[bad]).__name__}, "
                           f"not a tensor (top-level keys: {', '.join(map(str, list(state)[:5]))})")
    return _strip_wrapper_prefixes(state), meta


# ---------------------------------------------------------------------------------------------
