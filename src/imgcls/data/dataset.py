"""A dataset of one sub-folder per class, as torchvision's ImageFolder, with bad files handled."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from imgcls.data.decode import is_file_or_link, is_image_file, load_array, load_image
from imgcls.data.names import safe_name
from imgcls.errors import DataError

log = logging.getLogger(__name__)


def find_classes(root: str | Path) -> tuple[list[str], dict[str, int]]:
    """Sorted class-folder names and their indices; hidden folders are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; give a folder with one sub-folder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders found; put each class's images in a sub-folder of it")
    return classes, {c: i for i, c in enumerate(classes)}


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below `folder`, at any depth, sorted: the one scan of a folder of photos (class
    folders, a part of a split, predict's and export's folders). Extensions are case-insensitive, hidden
    files are ignored. Symbolic links named like images are kept even when broken or looping, so that
    the bad-file prescan, `imgcls check` and predict report them instead of a run silently using fewer
    images; rglob does not descend into linked folders, so a folder link loop cannot hang the scan."""
    return sorted(p for p in Path(folder).rglob("*") if is_image_file(p) and is_file_or_link(p))


def scan_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(classes, [(path, class index)]) for every image file below each class folder (list_images), sorted."""
    root = Path(root)
    classes, class_to_idx = find_classes(root)
    samples: list[tuple[Path, int]] = []
    for name in classes:
        files = list_images(root / name)
        if not files:
            raise DataError(f"{root / name}: class folder has no images (extensions: jpg, jpeg, png, bmp, "
                            "gif, webp, tif, tiff); add some or remove the folder")
        samples += [(p, class_to_idx[name]) for p in files]
    return classes, samples


def find_bad_images(paths: list[Path], *, workers: int = 2) -> list[tuple[Path, str]]:
    """(path, reason) for every file that does not decode, checked before a run starts.

    Each file is fully decoded (truncation shows only at the end of the data), at JPEG draft
    scale so it costs a fraction of a real decode; threads overlap Pillow's GIL-free decoding.
    """
    from concurrent.futures import ThreadPoolExecutor

    def probe(path: Path) -> tuple[Path, str] | None:
        try:
            load_image(path, min_side=32)
        except DataError as e:
            return path, str(e).removeprefix(f"{safe_name(path)}: ")
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [r for r in pool.map(probe, paths) if r is not None]


def save_class_indices(classes: list[str], path: str | Path) -> None:
    """class_indices.json as the seeds' scripts write it: {"0": "daisy", ...}."""
    Path(path).write_text(json.dumps({str(i): c for i, c in enumerate(classes)}, indent=2) + "\n")


class ImageFolder(Dataset):
    """Images under `root/<class>/...`; items are (transform(image), class index).

    `min_side` lets JPEGs decode reduced (draft mode) when the transform shrinks them anyway; `resize`
    (the eval transform's shorter side) lets only JPEGs above decode.REDUCE_ABOVE_PIXELS decode reduced.
    `cache=True` decodes every image once into a memory-mapped store (see data.cache). `multi_hot`: a
    multi-label set, whose samples' targets are tuples of class indices, each item's target a [C] float vector.
    With `skip_bad`, an unreadable file found at load time is replaced by the next good one and
    logged, so a run never dies at step 4,000; `imgcls check` finds such files before training.
    """

    def __init__(self, root: str | Path, transform: Callable | None = None, *, min_side: int | None = None,
                 resize: int | None = None, skip_bad: bool = False, samples: list[tuple[Path, int]] | None = None,
                 classes: list[str] | None = None, cache: bool = False, cache_side: int = 256,
                 cache_dir: str | Path | None = None, multi_hot: bool = False) -> None:
        self.root = Path(root)
        if samples is None:
            classes, samples = scan_folder(self.root)
        self.classes = list(classes or [])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.multi_hot = multi_hot  # samples' targets are tuples of class indices: items give [C] float vectors
        self.transform = transform
        self.min_side, self.resize = min_side, resize
        self.skip_bad = skip_bad
        self.cache = None
        if cache:
            from imgcls.data.cache import DecodedCache

            self.cache = DecodedCache([p for p, _ in samples], side=cache_side, cache_dir=cache_dir,
                                      skip_bad=skip_bad)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for offset in range(len(self.samples)):
            i = (index + offset) % len(self.samples)
            path, target = self.samples[i]
            try:
                # transforms take HWC arrays (decoded, or mapped from the cache); no transform: PIL
                if self.cache is not None:
                    img = self.cache.array(i) if self.transform else self.cache.image(i)
                else:
                    img = (load_array if self.transform else load_image)(path, min_side=self.min_side,
                                                                         resize=self.resize)
            except DataError as e:
                if not self.skip_bad:
                    raise
                log.warning("skipping %s", e)
                continue
            if self.multi_hot:
                target = torch.zeros(len(self.classes)).index_fill_(0, torch.tensor(target, dtype=torch.long), 1.0)
            return (self.transform(img) if self.transform else img), target
        raise DataError(f"{self.root}: no readable image at all")

