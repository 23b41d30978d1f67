"""Checkpoints: written atomically, read without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(path, weights_only=True)` reads it:

    format, imgcls_version      "imgcls-checkpoint", the version that wrote it
    arch                        {"model", "num_classes", "model_kwargs", "transfer", "base_classes"}
    model                       the state dict
    classes, preprocessing      class names in index order; eval resize/crop/mean/std/interpolation
    config                      the run's resolved Config as a dict
    optimizer, scheduler, scaler, epoch, epoch_step, global_step, rng, best, patience_left
                                everything `--resume` needs to continue bit-for-bit on CPU
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.errors import CheckpointError

FORMAT = "imgcls-checkpoint"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to a temporary file beside `path`, flush it to disk, then rename over `path`:
    a crash leaves either the old checkpoint or the new one, never half of one."""
    from imgcls import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "imgcls_version": __version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an imgcls checkpoint (a plain state dict? pass it as --weights)")
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


def rng_state() -> dict[str, Any]:
    """torch, numpy and Python generator states as plain tensors/lists (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
