"""The real photos an export is checked and calibrated on: image files of a folder (class folders,
a split folder or a flat folder), spread evenly over it, prepared with the model's eval preprocessing."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from imgcls.data import Preprocessing, load_array, safe_name
from imgcls.data.decode import is_image_file
from imgcls.errors import DataError

log = logging.getLogger(__name__)


def image_files(folder: str | Path, *, limit: int | None = None, what: str = "images") -> list[Path]:
    """Image files under `folder` (recursively, sorted), `limit` of them spread evenly over the sorted
    list so that every class folder is represented; a folder without images is a one-line DataError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{safe_name(folder)}: no such folder of {what}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and is_image_file(p))
    if not files:
        raise DataError(f"{safe_name(folder)}: has no images (.jpg, .png, .webp, ...) to use as {what}")
    if limit is not None and len(files) > limit:
        picks = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in picks]
    return files


def split_parts(data: str | Path) -> tuple[Path, Path | None]:
    """(calibration folder, validation folder or None) of a data folder: its train/ and val/ parts when
    it is a split folder, else the folder itself and no validation part."""
    data = Path(data)
    if (data / "train").is_dir():
        return data / "train", (data / "val") if (data / "val").is_dir() else None
    return data, None


def uint8_batches(paths: list[Path], preprocessing: Preprocessing, batch_size: int = 32
                  ) -> Iterator[tuple[torch.Tensor, list[Path]]]:
    """(uint8 NHWC batch, its paths) with the eval preprocessing; an unreadable file is left out with a
    warning naming it and why (not the advice of the commands that read data folders: export has no
    --skip-bad, it always skips)."""
    transform = preprocessing.eval_transform()
    for start in range(0, len(paths), batch_size):
        arrays, kept = [], []
        for p in paths[start:start + batch_size]:
            try:
                arrays.append(transform(load_array(p)))
                kept.append(p)
            except DataError as e:
                log.warning("imgcls: skipped %s", e.reason)
        if arrays:
            yield torch.from_numpy(np.stack(arrays)), kept


def float_batches(paths: list[Path], preprocessing: Preprocessing, batch_size: int = 32
                  ) -> Iterator[torch.Tensor]:
    """Normalised float NCHW batches (contiguous) of `paths`: what the exported model takes."""
    for images, _ in uint8_batches(paths, preprocessing, batch_size):
        yield preprocessing.normalize(images).contiguous()
