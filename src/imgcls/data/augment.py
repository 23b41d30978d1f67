"""Per-image augmentation policies: TrivialAugmentWide, RandAugment and random erasing, without torchvision.

The operations, their magnitude bins and the fill follow torchvision's definitions
(transforms/autoaugment.py, PIL path): the same 14 operations, 31 magnitude bins, nearest
resampling, black fill for the geometric ones, and the same order of random draws, so for one
seed of torch's generator the same operation and magnitude are picked. Images arrive as uint8
HWC arrays (or PIL images) after the random crop; the operations run on a PIL view of the
crop (Pillow's ImageEnhance/ImageOps/affine are what torchvision's PIL path calls) and leave
as arrays.

Randomness comes from torch's global generator, which `SeededItems` sets per (seed, epoch,
index), so the augmentation of a sample does not depend on the worker count and resumes exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from imgcls.data.transforms import IMAGENET_MEAN, to_pil

NUM_BINS = 31  # torchvision's num_magnitude_bins


def _affine_matrix(center: tuple[float, float], angle: float, translate: tuple[float, float],
                   shear: tuple[float, float]) -> list[float]:
    """torchvision's _get_inverse_affine_matrix (scale 1): output pixel -> input pixel, for PIL."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _affine(img: Image.Image, *, translate=(0.0, 0.0), shear=(0.0, 0.0), center=None) -> Image.Image:
    w, h = img.size
    center = (w * 0.5, h * 0.5) if center is None else center
    matrix = _affine_matrix(center, 0.0, translate, shear)
    return img.transform(img.size, Image.AFFINE, matrix, Image.NEAREST, fillcolor=(0,) * len(img.getbands()))


def apply_op(img: Image.Image, name: str, magnitude: float) -> Image.Image:
    """One operation of the policies, as torchvision's _apply_op does it on a PIL image."""
    if name == "ShearX":  # the magnitude is a shear factor; affine takes degrees
        return _affine(img, shear=(math.degrees(math.atan(magnitude)), 0.0), center=(0, 0))
    if name == "ShearY":
        return _affine(img, shear=(0.0, math.degrees(math.atan(magnitude))), center=(0, 0))
    if name == "TranslateX":
        return _affine(img, translate=(int(magnitude), 0))
    if name == "TranslateY":
        return _affine(img, translate=(0, int(magnitude)))
    if name == "Rotate":
        return img.rotate(magnitude, Image.NEAREST, fillcolor=(0,) * len(img.getbands()))
    if name == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1.0 + magnitude)
    if name == "Color":
        return ImageEnhance.Color(img).enhance(1.0 + magnitude)
    if name == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 + magnitude)
    if name == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(img, magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Identity":
        return img
    raise ValueError(f"unknown augmentation op {name!r}")


def _space(width: int, height: int, *, wide: bool) -> dict[str, tuple[torch.Tensor, bool]]:
    """op -> (magnitudes per bin, signed): TrivialAugmentWide's wide ranges or RandAugment's."""
    n = NUM_BINS
    strength = 0.99 if wide else 0.9
    return {
        "Identity": (torch.tensor(0.0), False),
        "ShearX": (torch.linspace(0.0, 0.99 if wide else 0.3, n), True),
        "ShearY": (torch.linspace(0.0, 0.99 if wide else 0.3, n), True),
        "TranslateX": (torch.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * width, n), True),
        "TranslateY": (torch.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * height, n), True),
        "Rotate": (torch.linspace(0.0, 135.0 if wide else 30.0, n), True),
        "Brightness": (torch.linspace(0.0, strength, n), True),
        "Color": (torch.linspace(0.0, strength, n), True),
        "Contrast": (torch.linspace(0.0, strength, n), True),
        "Sharpness": (torch.linspace(0.0, strength, n), True),
        "Posterize": (8 - (torch.arange(n) / ((n - 1) / (6 if wide else 4))).round().int(), False),
        "Solarize": (torch.linspace(255.0, 0.0, n), False),
        "AutoContrast": (torch.tensor(0.0), False),
        "Equalize": (torch.tensor(0.0), False),
    }


def _signed(magnitude: float, signed: bool) -> float:
    return -magnitude if signed and torch.randint(2, (1,)) else magnitude


@dataclass(frozen=True)
class TrivialAugmentWide:
    """TrivialAugment (Müller & Hutter, 2021), wide ranges: one random operation at a random magnitude."""

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        img = to_pil(img)
        space = _space(*img.size, wide=True)
        name = list(space)[int(torch.randint(len(space), (1,)).item())]
        magnitudes, signed = space[name]
        magnitude = (float(magnitudes[torch.randint(len(magnitudes), (1,), dtype=torch.long)].item())
                     if magnitudes.ndim > 0 else 0.0)
        return np.asarray(apply_op(img, name, _signed(magnitude, signed)))


@dataclass(frozen=True)
class RandAugment:
    """RandAugment (Cubuk et al., 2020): `num_ops` random operations at the fixed `magnitude` bin (0..30)."""

    num_ops: int = 2
    magnitude: int = 9

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        img = to_pil(img)
        space = _space(*img.size, wide=False)
        for _ in range(self.num_ops):
            name = list(space)[int(torch.randint(len(space), (1,)).item())]
            magnitudes, signed = space[name]
            magnitude = float(magnitudes[self.magnitude].item()) if magnitudes.ndim > 0 else 0.0
            img = apply_op(img, name, _signed(magnitude, signed))
        return np.asarray(img)


@dataclass(frozen=True)
class RandomErasing:
    """Random erasing (Zhong et al., 2017) on a uint8 HWC image, torchvision's box sampling (area in
    `scale`, log-uniform aspect in `ratio`, 10 tries). The box gets the mean colour: what
    torchvision's default value=0 becomes after Normalize, here before it (batches are normalised
    on the device)."""

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    mean: tuple[float, float, float] = IMAGENET_MEAN

    def get_params(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """(top, left, h, w) of the box, or None when 10 tries found none that fits."""
        area = height * width
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            erase_area = area * torch.empty(1).uniform_(self.scale[0], self.scale[1]).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            h = int(round(math.sqrt(erase_area * aspect)))
            w = int(round(math.sqrt(erase_area / aspect)))
            if not (h < height and w < width):
                continue
            top = int(torch.randint(0, height - h + 1, size=(1,)).item())
            left = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return top, left, h, w
        return None

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        arr = np.asarray(img)
        if torch.rand(1).item() >= self.p:
            return arr
        box = self.get_params(arr.shape[0], arr.shape[1])
        if box is None:
            return arr
        top, left, h, w = box
        out = arr.copy() if not arr.flags.writeable else arr
        out[top:top + h, left:left + w] = np.array([round(255 * m) for m in self.mean], dtype=np.uint8)
        return out


def augment_steps(policy: str, *, randaugment_ops: int = 2, randaugment_magnitude: int = 9,
                  random_erasing: float = 0.0, mean=IMAGENET_MEAN) -> list[Callable]:
    """The uint8 steps that follow the crop and flip: the policy, then erasing (torchvision's
    reference order: the policy before ToTensor, erasing after Normalize)."""
    steps: list[Callable] = []
    if policy == "trivialaugment":
        steps.append(TrivialAugmentWide())
    elif policy == "randaugment":
        steps.append(RandAugment(randaugment_ops, randaugment_magnitude))
    elif policy != "none":
        raise ValueError(f"unknown augmentation policy {policy!r}; use none, trivialaugment or randaugment")
    if random_erasing > 0:
        steps.append(RandomErasing(random_erasing, mean=tuple(mean)))
    return steps
