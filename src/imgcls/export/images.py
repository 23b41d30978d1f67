"""The real photos an export is checked and calibrated on, read as train and eval read data (data.open_parts:
a class-per-folder set, a split folder or a split.json index; also any folder of photos), spread evenly over
them, prepared with the model's eval preprocessing."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgcls.data import DatasetParts, Preprocessing, list_images, load_array, open_parts, safe_name
from imgcls.errors import DataError
from imgcls.paths import bundled_photos

log = logging.getLogger(__name__)


def image_files(folder: str | Path, *, limit: int | None = None, what: str = "images") -> list[Path]:
    """Image files under `folder` (data.list_images), `limit` of them spread evenly over the sorted
    list so that every class folder is represented; a folder without images is a one-line DataError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{safe_name(folder)}: no such folder of {what}")
    return _spread(list_images(folder), limit, folder, what)


def _spread(files: list[Path], limit: int | None, where: Path, what: str) -> list[Path]:
    if not files:
        raise DataError(f"{safe_name(where)}: has no images (.jpg, .png, .webp, ...) to use as {what}")
    if limit is not None and len(files) > limit:
        picks = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in picks]
    return files


def _part_or_all(parts: DatasetParts, part: str) -> tuple[list[Path], Path]:
    """(photos, where): `part` of a split index or split folder that has it, else every photo of the data."""
    return (parts.files(part), parts.roots[part]) if part in parts.parts else (parts.files(), parts.path)


@dataclass(frozen=True)
class ExportPhotos:
    calib: list[Path]  # what int8 calibrates on ([] without --calib)
    check: list[Path]  # what the fp32 export is verified on
    checked_on: str  # where those are, for the report
    agree: list[Path]  # what int8's top-1 is compared with fp32's on


def export_photos(calib: str | Path | None, val: str | Path | None, *, calib_images: int, check_images: int
                  ) -> ExportPhotos:
    """--calib and --val, each read once (labels are not needed). Calibration: `calib_images` photos of calib's
    train part, else of all its photos. Validation: --val's val part, else all its photos; else calib's val
    part. The fp32 check takes `check_images` of those (without any: of the bundled flower photos); int8's
    agreement all of them (without any: the calibration data's photos not calibrated on, else the check's)."""
    calib_files: list[Path] = []
    unused: list[Path] = []
    val_files: list[Path] = []
    val_from: Path | None = None
    if calib:
        parts = open_parts(calib, labels=False)
        files, where = _part_or_all(parts, "train")
        calib_files = _spread(files, calib_images, where, "calibration images")
        chosen = set(calib_files)
        unused = [p for p in files if p not in chosen]
        if "val" in parts.parts:
            val_files, val_from = parts.files("val"), parts.roots["val"]
    if val:
        val_files, val_from = _part_or_all(open_parts(val, labels=False), "val")
    if val_from is None:
        bundled = bundled_photos()
        check = _spread(list_images(bundled), check_images, bundled, "check images")
        return ExportPhotos(calib_files, check, safe_name(bundled), unused or check)
    return ExportPhotos(calib_files, _spread(val_files, check_images, val_from, "check images"), safe_name(val_from),
                        val_files)


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
