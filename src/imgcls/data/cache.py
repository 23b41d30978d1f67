"""A decoded-image cache: every image decoded once, shorter side resized, in one memory-mapped file.

Decoding JPEGs is most of a CNN input pipeline's cost on a CPU. The cache stores each image as
uint8 HWC pixels with its shorter side resized to `side` (256 by default, what eval resizes to
anyway; train crops then come from that image instead of the full-size one). The file is keyed
by every source file's path, size and modification time and by `side`, so a changed, added or
removed file makes a new cache instead of stale pixels; it is written to a temporary name and
renamed, so an interrupted build leaves nothing half-written behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls.data.decode import load_array
from imgcls.data.transforms import Resize
from imgcls.errors import DataError

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imgcls" / "decoded"


class DecodedCache:
    def __init__(self, paths: list[Path], *, side: int = 256, cache_dir: str | Path | None = None,
                 skip_bad: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.side = side
        self.dir = Path(cache_dir) if cache_dir else default_cache_dir()
        stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.paths]
        self.key = hashlib.sha256(json.dumps([1, side, stamp]).encode()).hexdigest()[:24]
        self.data_path = self.dir / f"{self.key}.u8"
        self.index_path = self.dir / f"{self.key}.json"
        if not self.index_path.is_file():
            self._build(skip_bad)
        index = json.loads(self.index_path.read_text())
        self.offsets, self.shapes = index["offsets"], index["shapes"]
        self._data: np.memmap | None = None  # opened lazily, once per process (workers too)

    def _build(self, skip_bad: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        resize = Resize(self.side)
        offsets, shapes, offset = [], [], 0
        tmp = self.data_path.with_suffix(f".tmp{os.getpid()}")
        log.info("decoding %d images once into %s", len(self.paths), self.data_path)
        with open(tmp, "wb") as f:
            for path in self.paths:
                try:
                    pixels = np.asarray(resize(load_array(path, min_side=self.side)), dtype=np.uint8)
                except DataError:
                    if not skip_bad:
                        tmp.unlink()
                        raise
                    pixels = np.zeros((0, 0, 3), dtype=np.uint8)  # read back as "bad"
                f.write(pixels.tobytes())
                offsets.append(offset)
                shapes.append(list(pixels.shape))
                offset += pixels.size
        os.replace(tmp, self.data_path)
        tmp_index = self.index_path.with_suffix(f".tmp{os.getpid()}")
        tmp_index.write_text(json.dumps({"side": self.side, "offsets": offsets, "shapes": shapes,
                                         "files": [str(p) for p in self.paths]}))
        os.replace(tmp_index, self.index_path)  # the index last: its presence means complete

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_data"} | {"_data": None}

    def array(self, i: int) -> np.ndarray:
        """Image `i` as a read-only HWC uint8 view of the mapped file (no copy)."""
        h, w, c = self.shapes[i]
        if h == 0:
            raise DataError(f"{self.paths[i]}: not a readable image (found when the cache was built)")
        if self._data is None:
            self._data = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        start = self.offsets[i]
        return np.asarray(self._data[start:start + h * w * c]).reshape(h, w, c)

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(self.array(i))
