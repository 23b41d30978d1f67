"""Transforms equal to torchvision's PIL-based ones, without torchvision.

Resize, CenterCrop and RandomResizedCrop use the same Pillow calls and the same integer
arithmetic as torchvision (shorter side to `size`, longer side `int(size * long / short)`;
crop offsets `int(round((h - crop) / 2))`, Python's round-half-to-even included), so the eval
pipeline gives the same tensors that torchvision's Resize(256) + CenterCrop(224) + ToTensor() +
Normalize() would. Randomness comes from torch's global generator, which DataLoader seeds per worker.

Images travel between steps as PIL images or as uint8 HWC numpy arrays (what the decoded cache
and the fast train path hand over). The eval steps (Resize, CenterCrop) always use Pillow, for
parity. The train crop uses torch's uint8 antialiased resize kernel on arrays (about 4x faster
than Pillow's here; the same bilinear/bicubic filter with antialias, so values differ from
Pillow's by rounding only) unless `backend="pil"` asks for Pillow's.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from imgcls.imagenet import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 - imported from here by many modules
INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def to_pil(img: Image.Image | np.ndarray) -> Image.Image:
    return img if isinstance(img, Image.Image) else Image.fromarray(np.ascontiguousarray(img))


def image_size(img: Image.Image | np.ndarray) -> tuple[int, int]:
    """(width, height) of a PIL image or an HWC array."""
    return img.size if isinstance(img, Image.Image) else (img.shape[1], img.shape[0])


def resize_crop_uint8(img: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
                      interpolation: str = "bilinear") -> np.ndarray:
    """Resize the (left, top, right, bottom) box of an HWC uint8 array to (width, height).

    Only the box is copied (HWC is the channels_last layout torch's vectorised uint8 kernel wants);
    bilinear and bicubic are antialiased when shrinking, like Pillow's filters.
    """
    left, top, right, bottom = box
    crop = torch.from_numpy(np.array(img[top:bottom, left:right], order="C"))  # a writable copy
    # 1HWC -> 1CHW view with canonical channels_last strides: only then does torch pick its
    # vectorised uint8 kernel and give a channels_last result (2x faster, and HWC for free)
    x = crop.unsqueeze(0).permute(0, 3, 1, 2)
    if interpolation == "nearest":
        out = F.interpolate(x, size=(size[1], size[0]), mode="nearest-exact")
    else:
        out = F.interpolate(x, size=(size[1], size[0]), mode=interpolation, antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).contiguous().numpy()  # HWC (a no-op copy when channels_last)


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

    def __call__(self, img: Image.Image | np.ndarray) -> Image.Image:
        img = to_pil(img)
        new = resized_size(*img.size, self.size)
        return img if new == img.size else img.resize(new, INTERPOLATION[self.interpolation])


@dataclass(frozen=True)
class CenterCrop:
    size: int

    def __call__(self, img: Image.Image | np.ndarray) -> Image.Image:
        img = to_pil(img)
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
    backend: str = "tensor"  # or "pil": Pillow's resize, torchvision's PIL path to the rounding

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

    def __call__(self, img: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        top, left, h, w = self.get_params(*image_size(img))
        box = (left, top, left + w, top + h)
        if self.backend == "pil":
            return to_pil(img).crop(box).resize((self.size, self.size), INTERPOLATION[self.interpolation])
        if isinstance(img, Image.Image):
            img = np.asarray(img)
        return resize_crop_uint8(img, box, (self.size, self.size), self.interpolation)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    p: float = 0.5

    def __call__(self, img: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        if torch.rand(1).item() >= self.p:
            return img
        if isinstance(img, Image.Image):
            return img.transpose(Image.FLIP_LEFT_RIGHT)
        # torch's flip kernel: ~10x faster than numpy copying a negative-stride HWC view
        return torch.from_numpy(img if img.flags.writeable else img.copy()).flip(1).numpy()


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation in a random order, as torchvision's PIL path does
    it (ImageEnhance.Brightness / Contrast / Color with a factor drawn from [1 - s, 1 + s]).
    Hue is left out: it is slow on PIL images and rarely helps on natural photos."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4

    def __call__(self, img: Image.Image | np.ndarray) -> Image.Image:
        from PIL import ImageEnhance

        img = to_pil(img)
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

    def __call__(self, img: Image.Image | np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.array(img, dtype=np.uint8))[None]  # a writable copy
        return normalize_batch(batch, self.mean, self.std)[0].contiguous()


@dataclass(frozen=True)
class ToUint8:
    """Image -> uint8 HWC numpy array: what loader workers ship (4x less than float) before the
    batch is normalised in one vectorised step by `normalize_batch`."""

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        return np.asarray(img, dtype=np.uint8)  # arrays pass as they are; collate copies them once


def normalize_batch(batch: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, *,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW, channels_last in memory (the faster layout for CNNs).

    One vectorised cast, then one fused multiply-add against a per-row pattern of the W*C
    interleaved channel constants: about 5x faster on a CPU than broadcasting over a 3-wide
    channel axis (or casting inside a mixed-dtype op, which falls off the vectorised path).
    `out`, an NHWC tensor of the batch's shape, dtype and device, receives the result (see
    BatchNormalizer: a reused buffer spares the page faults of a fresh 19 MB tensor per batch).
    """
    n, h, w, c = batch.shape
    if out is None:
        out = torch.empty((n, h, w, c), dtype=dtype, device=device)
    out.copy_(batch.to(out.device, non_blocking=True))  # the cast, on the target device
    scale = torch.tensor([1 / (255 * s) for s in std], device=out.device, dtype=out.dtype).repeat(w)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=out.device, dtype=out.dtype).repeat(w)
    rows = out.view(n * h, w * c)
    torch.addcmul(shift, rows, scale, out=rows)
    return out.permute(0, 3, 1, 2)


class BatchNormalizer:
    """`normalize_batch` writing into one kept buffer: the tensor it returns is overwritten by the
    next call, so use it before asking for the next batch (a training or inference step does)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.mean, self.std, self.device, self.dtype = tuple(mean), tuple(std), torch.device(device), dtype
        self._buffer: torch.Tensor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        buf = self._buffer
        if buf is None or buf.shape[1:] != batch.shape[1:] or buf.shape[0] < batch.shape[0]:
            buf = self._buffer = torch.empty(tuple(batch.shape), dtype=self.dtype, device=self.device)
        return normalize_batch(batch, self.mean, self.std, out=buf[:batch.shape[0]])


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


def eval_transform(*, resize: int = 256, crop: int | None = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   interpolation: str = "bilinear", uint8: bool = False) -> Compose:
    """Resize(shorter side) + CenterCrop + ToTensor + Normalize, torchvision's ImageNet eval; `crop=None`
    keeps the whole resized image (torchvision's segmentation preset).

    `uint8=True` stops before ToTensor (HWC uint8 array) for loaders that normalise whole batches.
    """
    crop_step = [] if crop is None else [CenterCrop(crop)]
    return Compose([Resize(resize, interpolation), *crop_step, _finish(uint8, mean, std)])


def train_transform(*, crop: int = 224, scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation: str = "bilinear",
                    color_jitter: float = 0.0, uint8: bool = False, extra: Sequence[Callable] = ()) -> Compose:
    """RandomResizedCrop + RandomHorizontalFlip (+ ColorJitter) (+ `extra`) + ToTensor + Normalize,
    torchvision's ImageNet train recipe; `color_jitter=s` jitters brightness, contrast and saturation
    by +-s; `extra` are uint8 steps such as data.augment's policies and random erasing."""
    steps: list[Callable] = [RandomResizedCrop(crop, tuple(scale), interpolation=interpolation)]
    if hflip > 0:
        steps.append(RandomHorizontalFlip(hflip))
    if color_jitter > 0:
        steps.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    steps.extend(extra)
    steps.append(_finish(uint8, mean, std))
    return Compose(steps)
