"""Training checkpoints: the file format lives in `imgcls.checkpoint` (layer 2, shared with inference and
export); what only training needs is here: the random-generator states that make a resume bit-exact.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from imgcls.checkpoint import (FORMAT, check_arch, describe_arch, load_checkpoint, remove_stale_temps,
                               save_checkpoint)

__all__ = ["FORMAT", "check_arch", "describe_arch", "load_checkpoint", "remove_stale_temps", "save_checkpoint",
           "rng_state", "set_rng_state"]


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
