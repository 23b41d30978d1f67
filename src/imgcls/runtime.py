"""Where and how a model runs: the device, the autocast precision, and one loop that runs a model over
batches. Layer 2: training (validation), `imgcls eval` and the Predictor all use the same `run_model`.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from imgcls.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown --device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--amp` on this device, or None for full fp32.

    `auto` turns autocast on only for CUDA. On CPUs it stays off: a CPU that lists avx512_bf16 may
    still run bf16 matmuls slower than fp32 (3x slower on this project's AVX-512 build machine), so
    bf16 on CPU is an explicit `--amp bf16`, to be measured on the machine at hand.
    """
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("--amp fp16 needs a CUDA device (it trains with a gradient scaler there); "
                              "use --amp bf16 or off")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


@torch.no_grad()
def run_model(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
              amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, C] float on the CPU, targets [N]) of `model` in eval mode over (input, target) batches.
    A tuple output (GoogLeNet's aux heads in training) counts by its first element."""
    model.eval()
    outs, targets = [], []
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(x)
        outs.append((out[0] if isinstance(out, (tuple, list)) else out).float().cpu())
        targets.append(torch.as_tensor(y).cpu())
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(targets)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def _glibc():
    """glibc as a ctypes library, or None where there is none (not Linux, musl and others)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_memory(*, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A training step allocates and frees the same activation tensors (tens of MB each) every
    step. By default glibc serves each with a fresh mmap and unmaps it on free, so every step
    page-faults its whole working set again (50-85k faults per ResNet-18 step at 224 px, 5-10% of
    the step). With mmap off (M_MMAP_MAX 0) and the heap trimmed only above `trim_threshold`,
    the memory stays mapped and is reused. It changes the whole process, so only the command line
    calls it, at the start of a command (never on import, never inside library functions); the
    process keeps its peak heap until it exits. Returns False where it does not apply (not
    glibc, or mallopt refused), True when set. Loader workers forked later inherit it.
    """
    import ctypes

    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)))


def return_freed_memory() -> bool:
    """Hand what glibc's malloc holds freed back to the kernel, in every arena (malloc_trim(0)).

    The opposite trade to keep_freed_memory, for a long-lived server: each request decodes photos
    and runs a batch in a worker thread, and what it frees stays mapped in that thread's arena
    (about 100 MB for 16 photos of 8000 x 8000 px with ResNet-18, benchmarks/serve.py --memory), so
    an idle server would sit on its last request's memory. `imgcls serve` calls it after each
    request; it takes a few milliseconds. Returns False where it does not apply (not glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class TorchRunner:
    """A model as a runner: normalised float NCHW batch on `device` -> logits [N, C] float on the CPU.

    The seam between what prepares images (Predictor, eval) and what computes logits: a PyTorch model
    here, an ONNX Runtime session in imgcls.export.OrtRunner; both take and give the same tensors.
    """

    backend = "pytorch"

    def __init__(self, model: nn.Module, device: torch.device, *, amp_dtype: torch.dtype | None = None) -> None:
        self.model, self.device, self.amp_dtype = model.to(device).eval(), device, amp_dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return run_model(self.model, [(x, torch.zeros(len(x), dtype=torch.long))], amp_dtype=self.amp_dtype)[0]
