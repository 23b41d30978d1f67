"""Test-time augmentation views: each image becomes V uint8 crops that the model sees in one batch and
whose probabilities are averaged (inference.Predictor with `tta`).

The views are torchvision's multi-crop evaluation, on the model's eval preprocessing: the image resized
(shorter side to `resize`), then
    flip         the centre crop and its horizontal mirror (2 views)
    crops        FiveCrop: the four corner crops and the centre crop, in torchvision's order
                 (top-left, top-right, bottom-left, bottom-right, centre) (5 views)
    flip,crops   TenCrop: those five, then the same five of the mirrored image (10 views)
A resized image smaller than the crop is zero-padded first, as CenterCrop pads it (torchvision's FiveCrop
refuses one).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from imgcls.data.preprocessing import Preprocessing
from imgcls.data.transforms import Resize, center_crop_box
from imgcls.errors import ConfigError

MODES = ("flip", "crops")


def parse_tta(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`--tta flip`, `--tta crops`, `--tta flip,crops` as a sorted tuple of modes (() = none)."""
    if not text:
        return ()
    words = text.split(",") if isinstance(text, str) else list(text)
    modes = [w.strip() for w in words]
    if any(m not in MODES for m in modes):
        shown = text if isinstance(text, str) else ",".join(words)
        raise ConfigError(f"--tta {shown!r}: use flip, crops or flip,crops (torchvision's FiveCrop/TenCrop views)")
    return tuple(m for m in MODES if m in modes)


def view_count(modes: Sequence[str]) -> int:
    """How many views a mode set gives: 1 (none), 2 (flip), 5 (crops), 10 (flip,crops)."""
    return (5 if "crops" in modes else 1) * (2 if "flip" in modes else 1)


def _padded(img: Image.Image, crop: int) -> Image.Image:
    w, h = img.size
    if w >= crop and h >= crop:
        return img
    canvas = Image.new(img.mode, (max(w, crop), max(h, crop)))
    canvas.paste(img, (max(crop - w, 0) // 2, max(crop - h, 0) // 2))
    return canvas


def five_crops(img: Image.Image, crop: int) -> list[Image.Image]:
    """torchvision's five_crop: top-left, top-right, bottom-left, bottom-right, centre."""
    w, h = img.size
    boxes = [(0, 0), (w - crop, 0), (0, h - crop), (w - crop, h - crop)]
    corners = [img.crop((x, y, x + crop, y + crop)) for x, y in boxes]
    return [*corners, img.crop(center_crop_box(w, h, crop, crop))]


class TTAViews:
    """Image -> uint8 array [V, crop, crop, 3] of the views of `modes` under `preprocessing`."""

    def __init__(self, preprocessing: Preprocessing, modes: Sequence[str]) -> None:
        if preprocessing.crop is None:
            raise ConfigError("--tta needs a model with a square eval crop")
        self.modes, self.crop = tuple(modes), preprocessing.crop
        self.resize = Resize(preprocessing.resize, preprocessing.interpolation)
        self.views = view_count(self.modes)

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        img = _padded(self.resize(img).convert("RGB"), self.crop)
        if "crops" in self.modes:
            views = five_crops(img, self.crop)
            if "flip" in self.modes:
                views += five_crops(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), self.crop)
        else:
            w, h = img.size
            centre = img.crop(center_crop_box(w, h, self.crop, self.crop))
            views = [centre, centre.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
        return np.stack([np.asarray(v, dtype=np.uint8) for v in views])

    def __repr__(self) -> str:
        return f"TTAViews({','.join(self.modes)}: {self.views} views of {self.crop} px)"
