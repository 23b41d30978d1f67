"""The WZMIAOMIAO course's data pipeline, the baseline of train_step.py and transfer.py: PIL decoding and
torchvision's transforms written out by hand (torchvision cannot be installed here), one photo at a time.

    train: RandomResizedCrop(size) (scale 0.08-1, ratio 3/4-4/3, 10 tries, else the centre square) + flip
    eval:  Resize(resize) (shorter side) + CenterCrop(size)
    then ToTensor + Normalize(mean, std)
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class CoursePhotos(Dataset):
    """(normalised float CHW tensor, class index) of every photo under root/<class>/."""

    def __init__(self, root: Path, *, train: bool, size: int, resize: int | None = None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        self.items = [(f, i) for i, c in enumerate(classes) for f in sorted((Path(root) / c).iterdir())]
        self.train, self.size, self.resize = train, size, resize or round(size / 0.875)
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        img = Image.open(path).convert("RGB")
        img = self._random_crop(img) if self.train else self._centre_crop(img)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std, label

    def _random_crop(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        for _ in range(10):
            area = w * h * random.uniform(0.08, 1.0)
            ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = random.randint(0, w - cw), random.randint(0, h - ch)
                break
        else:
            cw, ch, left, top = min(w, h), min(w, h), (w - min(w, h)) // 2, (h - min(w, h)) // 2
        img = img.crop((left, top, left + cw, top + ch)).resize((self.size, self.size), Image.BILINEAR)
        return img.transpose(Image.FLIP_LEFT_RIGHT) if random.random() < 0.5 else img

    def _centre_crop(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        s = self.resize / min(w, h)
        img = img.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))
