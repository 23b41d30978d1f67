"""`Preprocessing`, the eval preprocessing of a model as one frozen record: resize the shorter side,
centre-crop a square, normalise per channel. Registered weights, a run's config, a checkpoint and an
exported file all give one; the engine, the Predictor, Grad-CAM, export and serve build their eval
transform and batch normaliser from it, never from loose numbers.

Checkpoints and exported files store it as the plain dict `to_dict()` gives (the same keys and values
they always held); `from_dict` reads one back and checks every field, so a file changed after imgcls
wrote it is one line naming the file and the field, before any image is read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgcls.data.transforms import INTERPOLATION, BatchNormalizer, Compose, eval_transform, normalize_batch
from imgcls.errors import CheckpointError, quoted
from imgcls.limits import check_side

KEYS = ("resize", "crop", "mean", "std", "interpolation")


@dataclass(frozen=True)
class Preprocessing:
    """torchvision's eval preprocessing: shorter side to `resize` px (`interpolation`), centre crop
    `crop` x `crop` (None: no crop, the whole resized image, as torchvision's segmentation preset), then
    (pixel / 255 - mean) / std per RGB channel."""

    resize: int
    crop: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        """The dict checkpoints and exported files store (mean and std as lists, as JSON has them)."""
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, d: Any, *, where: str | Path, what: str = "preprocessing", fix: str) -> Preprocessing:
        """The record a file stores as `d`, or a one-line CheckpointError `WHERE: WHAT.FIELD VALUE: what is
        allowed; FIX`: resize and crop within 1..MAX_SIDE px, 3 finite means, 3 finite stds above 0, a known
        interpolation."""
        def refused(problem: str) -> CheckpointError:
            return CheckpointError(f"{where}: {problem}; {fix}")

        if not isinstance(d, dict):
            raise refused(f"{what} {quoted(d)}: must be an object with {', '.join(KEYS)}")
        missing = [key for key in KEYS if key not in d]
        if missing:
            raise refused(f"{what} has no {', '.join(missing)}")
        for key in ("resize", "crop"):
            if key == "crop" and d[key] is None:  # the whole resized image (segmentation)
                continue
            try:
                check_side(f"{what}.{key}", d[key], where=str(where))
            except ValueError as e:
                raise CheckpointError(f"{e}; {fix}") from None
        for key in ("mean", "std"):
            v = d[key]
            numbers = isinstance(v, (list, tuple)) and len(v) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
            if not numbers or (key == "std" and min(v) <= 0):
                above = ", each above 0" if key == "std" else ""
                raise refused(f"{what}.{key} {quoted(v)}: must be 3 finite numbers, one per RGB channel{above}")
        if not isinstance(d["interpolation"], str) or d["interpolation"] not in INTERPOLATION:
            raise refused(f"{what}.interpolation {quoted(d['interpolation'])}: must be one of "
                          f"{', '.join(INTERPOLATION)}")
        return cls(d["resize"], d["crop"], tuple(d["mean"]), tuple(d["std"]), d["interpolation"])

    def eval_transform(self) -> Compose:
        """Resize + CenterCrop to a uint8 HWC array: the batches are normalised whole (`normalizer`)."""
        return eval_transform(resize=self.resize, crop=self.crop, interpolation=self.interpolation, uint8=True)

    def normalizer(self, device: torch.device | str = "cpu") -> BatchNormalizer:
        """The batch normaliser (uint8 NHWC -> float NCHW on `device`, one kept buffer)."""
        return BatchNormalizer(self.mean, self.std, device=device)

    def normalize(self, batch: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """One uint8 NHWC batch normalised into a new float NCHW tensor (channels_last) on `device`."""
        return normalize_batch(batch, self.mean, self.std, device=device)
