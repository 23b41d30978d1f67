"""Transforms equal to torchvision's PIL-based ones, without torchvision.

Resize, CenterCrop and RandomResizedCrop use the same Pillow calls and the same integer
arithmetic as torchvision (shorter side to `size`, longer side `int(size * long / short)`;
crop offsets `int(round((h - crop) / 2))`, Python's round-half-to-even included), so the eval
pipeline gives the same tensors that torchvision's Resize(256) + CenterCrop(224) + ToTensor() +
Normalize() would. Randomness comes from torch's global generator, which DataLoader seeds per worker.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_w, new_h) with the shorter side equal to `size`, as torchvision computes it."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, crop_w: int, crop_h: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central crop; negative offsets mean zero padding."""
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return left, top, left + crop_w, top + crop_h


@dataclass(frozen=True)
class Resize:
    size: int
    interpolation: str = "bilinear"

    def __call__(self, img: Image.Image) -> Image.Image:
        new = resized_size(*img.size, self.size)
        return img if new == img.size else img.resize(new, INTERPOLATION[self.interpolation])


@dataclass(frozen=True)
class CenterCrop:
    size: int

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if w < self.size or h < self.size:  # torchvision pads with zeros first, split as below
            pad_l, pad_t = max(self.size - w, 0) // 2, max(self.size - h, 0) // 2
            canvas = Image.new(img.mode, (max(w, self.size), max(h, self.size)))
            canvas.paste(img, (pad_l, pad_t))
            img, (w, h) = canvas, canvas.size
        return img.crop(center_crop_box(w, h, self.size, self.size))


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop a random area in `scale` of the image with aspect ratio in `ratio`, resize to `size`."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"

    def get_params(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(top, left, h, w), torchvision's sampling: 10 tries, then a central crop of clamped ratio."""
        area = width * height
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(*self.scale).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,)).item())
                left = int(torch.randint(0, width - w + 1, size=(1,)).item())
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Image.Image) -> Image.Image:
        top, left, h, w = self.get_params(*img.size)
        # resize straight from the box: no intermediate crop copy (torchvision crops first; the
        # filter may read up to a pixel outside the box, which does not matter for augmentation)
        return img.resize((self.size, self.size), INTERPOLATION[self.interpolation], box=(left, top, left + w, top + h))


@dataclass(frozen=True)
class RandomHorizontalFlip:
    p: float = 0.5

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1).item() < self.p else img


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation in a random order, as torchvision's PIL path does
    it (ImageEnhance.Brightness / Contrast / Color with a factor drawn from [1 - s, 1 + s]).
    Hue is left out: it is slow on PIL images and rarely helps on natural photos."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4

    def __call__(self, img: Image.Image) -> Image.Image:
        from PIL import ImageEnhance

        ops = [(ImageEnhance.Brightness, self.brightness), (ImageEnhance.Contrast, self.contrast),
               (ImageEnhance.Color, self.saturation)]
        for i in torch.randperm(len(ops)).tolist():
            enhancer, strength = ops[i]
            if strength > 0:
                factor = float(torch.empty(1).uniform_(max(0.0, 1 - strength), 1 + strength))
                img = enhancer(img).enhance(factor)
        return img


@dataclass(frozen=True)
class ToTensorNormalize:
    """uint8 HWC image -> float CHW in [0, 1], then (x - mean) / std, in one pass."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, img: Image.Image) -> torch.Tensor:
        batch = torch.from_numpy(np.array(img, dtype=np.uint8))[None]  # a writable copy
        return normalize_batch(batch, self.mean, self.std)[0].contiguous()


@dataclass(frozen=True)
class ToUint8:
    """Image -> uint8 HWC numpy array: what loader workers ship (4x less than float) before the
    batch is normalised in one vectorised step by `normalize_batch`."""

    def __call__(self, img: Image.Image) -> np.ndarray:
        return np.asarray(img, dtype=np.uint8)


def normalize_batch(batch: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, *,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW, channels_last in memory (the faster layout for CNNs)."""
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).to(dtype)
    scale = torch.tensor([1 / (255 * s) for s in std], device=x.device, dtype=dtype).view(1, 3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], device=x.device, dtype=dtype).view(1, 3, 1, 1)
    return x.mul_(scale).sub_(shift)


class Compose:
    def __init__(self, steps: Sequence[Callable]) -> None:
        self.steps = list(steps)

    def __call__(self, x):
        for step in self.steps:
            x = step(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.steps)) + ")"


def _finish(uint8: bool, mean, std) -> Callable:
    return ToUint8() if uint8 else ToTensorNormalize(tuple(mean), tuple(std))


def eval_transform(*, resize: int = 256, crop: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   interpolation: str = "bilinear", uint8: bool = False) -> Compose:
    """Resize(shorter side) + CenterCrop + ToTensor + Normalize, torchvision's ImageNet eval.

    `uint8=True` stops before ToTensor (HWC uint8 array) for loaders that normalise whole batches.
    """
    return Compose([Resize(resize, interpolation), CenterCrop(crop), _finish(uint8, mean, std)])


def train_transform(*, crop: int = 224, scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation: str = "bilinear",
                    color_jitter: float = 0.0, uint8: bool = False) -> Compose:
    """RandomResizedCrop + RandomHorizontalFlip (+ ColorJitter) + ToTensor + Normalize, torchvision's
    ImageNet train recipe; `color_jitter=s` jitters brightness, contrast and saturation by +-s."""
    steps: list[Callable] = [RandomResizedCrop(crop, tuple(scale), interpolation=interpolation)]
    if hflip > 0:
        steps.append(RandomHorizontalFlip(hflip))
    if color_jitter > 0:
        steps.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    steps.append(_finish(uint8, mean, std))
    return Compose(steps)
