"""The one heavy pass of a run on cached outputs: the frozen part over every image, once per view.

`--transfer head` / `head+` train only a head on features that are a fixed function of the image, and
`last:` trains the tail of a network on the maps of its frozen prefix (engine.transfer.FrozenSplit), so
the engine computes them once (`extract_features`) and the epochs run on tensors. That pass is the
run's cost: for EfficientNet-Lite0 at 224 px on flower_photos it is 178 of the 221 seconds in
PyTorch eager. `backbone_runner` picks what runs it (`--feature-backend`):

    torch        the module itself, eager
    onnxruntime  the module exported to ONNX and run by ONNX Runtime (export.OrtFunction) on the CPU:
                 about 4x eager for the depthwise nets and 1.8x for ResNet-18 (benchmarks/inference.py)
    auto         onnxruntime on a CPU when imgcls[export] is installed and at least AUTO_MIN_IMAGES
                 images are to be run (below that, the export's seconds cost more than they save);
                 torch otherwise, or when the export fails

ONNX Runtime's features are checked against PyTorch's on the first batch; beyond CHECK_TOLERANCE
(relative) `auto` falls back to PyTorch with a warning and `onnxruntime` stops with a TrainingError.
The two backends agree to about 1e-6 relative, so a head trained either way ends within rounding
of the other, but only the same backend gives a bit-exact `--resume`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from imgcls.engine.batches import ImageBatches
from imgcls.engine.config import Config
from imgcls.engine.distributed import LOCAL, Dist
from imgcls.errors import ConfigError, ImgclsError, TrainingError, summary_of
from imgcls.progress import track

log = logging.getLogger("imgcls")

AUTO_MIN_IMAGES = 500
CHECK_TOLERANCE = 1e-3


class CheckedRunner:
    """`fast` with its first output compared against `reference`'s on the same batch."""

    def __init__(self, fast: Callable[[torch.Tensor], torch.Tensor], reference: nn.Module, *, strict: bool) -> None:
        self.fast, self.reference, self.strict = fast, reference, strict
        self.backend = getattr(fast, "backend", "fast")
        self.checked = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.checked:
            return self.fast(x)
        ref = self.reference(x).float()
        self.checked = True
        try:
            got = self.fast(x).float()
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types
            what = f"{self.backend} failed on the first batch of backbone features ({summary_of(e, 160)})"
        else:
            diff = (got - ref).abs().max().item() if got.shape == ref.shape else float("inf")
            rel = diff / max(ref.abs().max().item(), 1e-12)
            if rel <= CHECK_TOLERANCE:  # NaN fails too
                log.info("feature caching: %s agrees with PyTorch on the first batch (max relative difference "
                         "%.1e)", self.backend, rel)
                return got
            what = (f"{self.backend}'s backbone features differ from PyTorch's on the first batch "
                    f"(max relative difference {rel:.1e} > {CHECK_TOLERANCE:.0e})")
        if self.strict:
            raise TrainingError(f"{what}; use --feature-backend torch")
        log.warning("feature caching: %s; using PyTorch", what)
        self.fast, self.backend = self.reference, "torch"
        return ref


def check_backend(choice: str, device: torch.device) -> None:
    """Refuse `--feature-backend onnxruntime` where it cannot run (a GPU run, no imgcls[export]) before
    any work starts."""
    if choice != "onnxruntime":
        return
    if device.type != "cpu":
        raise ConfigError(f"--feature-backend onnxruntime runs the backbone on the CPU, but the run is on "
                          f"{device}; use --feature-backend torch (or auto) on a GPU")
    from imgcls.export.graph import available

    if not available():
        raise ConfigError("--feature-backend onnxruntime needs onnx, onnxscript and onnxruntime: "
                          "pip install 'imgcls[export]', or use --feature-backend torch")


def backbone_runner(backbone: nn.Module, cfg: Config, device: torch.device, *, images: int
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """What runs `backbone` (eval mode) over `images` images, by --feature-backend; see the module doc."""
    choice = cfg.data.feature_backend
    if choice == "torch" or (cfg.data.whole_photo and choice == "auto"):  # the ONNX runner's input is square
        return backbone
    if cfg.data.whole_photo:
        raise ConfigError("--feature-backend onnxruntime runs square --input-size crops; with --whole-photo use "
                          "--feature-backend torch (or auto)")
    check_backend(choice, device)
    if device.type != "cpu":
        return backbone
    from imgcls.export.graph import OrtFunction, available

    if choice == "auto" and (images < AUTO_MIN_IMAGES or not available()):
        return backbone
    try:
        fast = OrtFunction(backbone, input_size=cfg.data.input_size, threads=torch.get_num_threads())
    except ImgclsError as e:  # the export failed, or ONNX Runtime cannot load what it wrote
        if choice == "onnxruntime":
            raise
        log.warning("feature caching: ONNX Runtime cannot run this backbone (%s); using PyTorch", e)
        return backbone
    return CheckedRunner(fast, backbone, strict=choice == "onnxruntime")


@torch.no_grad()
def extract_features(runner: Callable[[torch.Tensor], torch.Tensor], ds, cfg: Config, device: torch.device, *,
                     views: int, workers: int, desc: str, dist: Dist = LOCAL, dtype: torch.dtype = torch.float32
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen part (`runner`: the module in eval mode, or `backbone_runner`'s choice) over `ds`
    `views` times (augmented when views > 1): its outputs [views, N, ...] in `dtype` on the CPU, written
    batch by batch into one tensor, and the targets [N] ([N, C] multi-hot for a multi-label set). Under DDP
    each rank runs its share of the images and every rank gets all of them, in sample order. float16 outputs
    beyond its range stop the run with a TrainingError (they would train on infinities)."""
    batches = ImageBatches(ds, cfg, device, train=False, workers=workers, dist=dist)
    index = batches.sampler.order()
    rows, targets = None, None
    for v in range(views):
        start = 0
        for x, y in track(batches.epoch(v), total=batches.steps(), enabled=cfg.train.progress,
                          desc=f"{desc} view {v + 1}/{views}" if views > 1 else desc):
            out = runner(x)
            if rows is None:
                rows = torch.empty((views, len(index), *out.shape[1:]), dtype=dtype)
                targets = torch.empty((len(index), *y.shape[1:]), dtype=y.dtype)  # class indices, or multi-hot
            batch = rows[v, start:start + len(out)]
            batch.copy_(out)
            if dtype == torch.float16 and not torch.isfinite(batch).all():
                raise TrainingError(f"{desc}: the frozen part's outputs exceed float16's range (65504); add "
                                    "--map-dtype float32")
            targets[start:start + len(y)] = y
            start += len(out)
    if dist.world > 1:  # every rank gets all rows, gathered one view at a time into one tensor
        full = torch.empty((views, len(ds), *rows.shape[2:]), dtype=dtype)
        for v in range(views):
            full[v] = dist.gather_rows(rows[v], index)
        rows, targets = full, dist.gather_rows(targets, index)
    return rows, targets
