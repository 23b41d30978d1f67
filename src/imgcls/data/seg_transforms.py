"""Paired transforms for segmentation: the mask gets exactly the photo's geometric transform.

Training (`PairedTrain`, the torchvision segmentation references' recipe): the shorter side scaled to
`base` x s with s uniform in `scale` (0.5..2.0), the photo bilinear and the mask nearest-neighbour;
padded to at least `crop` (the photo with the mean colour, the mask with void, so padding never
counts); a random `crop` x `crop` window; a horizontal flip of both; colour jitter on the photo only.
Evaluation (`PairedEval`): the shorter side to `resize` (the photo bilinear as the eval transform does,
the mask nearest), nothing cropped. Randomness comes from torch's global generator, which
`SeededItems` sets per (seed, epoch, sample), so a resumed run sees the same crops.

`MaskDataset` yields (photo uint8 HWC, mask uint8 HW); `collate_masks` stacks a batch (NHWC uint8,
NHW long), padding photos of other sizes at the bottom right (the mask with void).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, get_worker_info

from imgcls.data.decode import load_array
from imgcls.data.masks import MaskClasses, load_mask
from imgcls.data.transforms import INTERPOLATION, ColorJitter, resize_crop_uint8, resized_size, to_pil
from imgcls.imagenet import IMAGENET_MEAN

IGNORE = 255  # the ignore index of training targets: a mask's void value becomes it (MaskDataset), padding is it


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A mask resized to (width, height) by nearest neighbour (no value is ever blended)."""
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    x = torch.from_numpy(np.array(mask, dtype=np.uint8))[None, None]  # a writable copy
    return F.interpolate(x, size=(size[1], size[0]), mode="nearest-exact")[0, 0].numpy()


def resize_photo(img: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    if (img.shape[1], img.shape[0]) == size:
        return img
    return resize_crop_uint8(img, (0, 0, img.shape[1], img.shape[0]), size, interpolation)


@dataclass(frozen=True)
class PairedTrain:
    base: int  # the shorter side at scale 1 (the eval resize)
    crop: int
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: float = 0.5
    void: int = IGNORE
    fill: tuple[float, float, float] = IMAGENET_MEAN  # the photo's padding, as fractions of 255
    color_jitter: float = 0.0
    interpolation: str = "bilinear"

    def __call__(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = float(torch.empty(1).uniform_(*self.scale))
        size = resized_size(img.shape[1], img.shape[0], max(1, round(self.base * s)))
        img, mask = resize_photo(img, size, self.interpolation), resize_mask(mask, size)
        img, mask = self._pad(img, mask)
        h, w = mask.shape
        top = int(torch.randint(0, h - self.crop + 1, (1,)))
        left = int(torch.randint(0, w - self.crop + 1, (1,)))
        img = img[top:top + self.crop, left:left + self.crop]
        mask = mask[top:top + self.crop, left:left + self.crop]
        if self.hflip > 0 and torch.rand(1).item() < self.hflip:
            img, mask = img[:, ::-1], mask[:, ::-1]
        if self.color_jitter > 0:
            img = np.asarray(ColorJitter(self.color_jitter, self.color_jitter, self.color_jitter)(img))
        return np.ascontiguousarray(img), np.ascontiguousarray(mask)

    def _pad(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = mask.shape
        if h >= self.crop and w >= self.crop:
            return img, mask
        ph, pw = max(h, self.crop), max(w, self.crop)
        canvas = np.empty((ph, pw, 3), dtype=np.uint8)
        canvas[...] = np.array([round(255 * f) for f in self.fill], dtype=np.uint8)
        canvas[:h, :w] = img
        padded = np.full((ph, pw), self.void, dtype=np.uint8)
        padded[:h, :w] = mask
        return canvas, padded


@dataclass(frozen=True)
class PairedEval:
    """The shorter side to `resize` (None: as stored); the photo resized as Preprocessing's eval transform
    does it (Pillow, `interpolation`), the mask by nearest neighbour, or with `keep_mask` left at its own
    size (`imgcls eval` scores predictions brought back to each photo's size)."""

    resize: int | None
    interpolation: str = "bilinear"
    keep_mask: bool = False

    def __call__(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.resize is None:
            return np.asarray(img), mask
        size = resized_size(img.shape[1], img.shape[0], self.resize)
        if size != (img.shape[1], img.shape[0]):
            img = np.asarray(to_pil(img).resize(size, INTERPOLATION[self.interpolation]))
        return img, mask if self.keep_mask else resize_mask(mask, size)


class MaskDataset(Dataset):
    """(photo, mask) pairs; items are `transform(photo HWC uint8, mask HW uint8)` (untransformed without one),
    the mask's void value turned into IGNORE first, so every target ignores one value whatever the data's
    void is (CamVid's 11, VOC's 255)."""

    def __init__(self, root: str | Path, transform, *, samples: Sequence[tuple[Path, Path]], classes: MaskClasses
                 ) -> None:
        self.root, self.transform, self.labels = Path(root), transform, classes
        self.samples = list(samples)
        self.classes = list(classes.names)
        self.targets = [m for _, m in self.samples]
        self.collate = collate_masks  # the loader's collate_fn

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        photo, mask_path = self.samples[index]
        img, mask = load_array(photo), load_mask(mask_path, self.labels)  # full size: the mask's
        if self.labels.void != IGNORE:
            mask = np.where(mask == self.labels.void, np.uint8(IGNORE), mask)
        if self.transform is not None:
            img, mask = self.transform(img, mask)
        return img, mask


def collate_masks(batch: list[tuple[np.ndarray, np.ndarray]], *, void: int = IGNORE
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(NHWC uint8 photos, NHW long masks). Items of other sizes are padded to the largest at the bottom
    right: the photo with zeros, the mask with `void`. Photos and masks are sized apart: eval's masks
    stay at the photo's own size while the photos are resized (PairedEval keep_mask)."""
    h = max(m.shape[0] for _, m in batch)
    w = max(m.shape[1] for _, m in batch)
    shape = (len(batch), max(im.shape[0] for im, _ in batch), max(im.shape[1] for im, _ in batch), 3)
    if get_worker_info() is not None:  # straight into shared memory, as data.loader.collate_uint8
        storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
        images = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    else:
        images = torch.empty(shape, dtype=torch.uint8)
    masks = torch.full((len(batch), h, w), void, dtype=torch.long)
    if any(im.shape[:2] != shape[1:3] for im, _ in batch):
        images.zero_()
    pixels, labels = images.numpy(), masks.numpy()
    for i, (img, mask) in enumerate(batch):
        pixels[i, :img.shape[0], :img.shape[1]] = img
        labels[i, :mask.shape[0], :mask.shape[1]] = mask
    return images, masks
