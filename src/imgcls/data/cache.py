"""A decoded-image cache: every image decoded once, shorter side resized, in one memory-mapped file.

Decoding JPEGs is most of a CNN input pipeline's cost on a CPU. The cache stores each image as
uint8 HWC pixels with its shorter side resized to `side` (256 by default, what eval resizes to
anyway; train crops then come from that image instead of the full-size one). The file is keyed
by every source file's path, size and modification time and by `side`, so a changed, added or
removed file makes a new cache instead of stale pixels; it is written to a temporary name and
renamed, so an interrupted build leaves nothing half-written behind.

Caches live in $IMGCLS_HOME/decoded, else $XDG_CACHE_HOME/imgcls/decoded, else
~/.cache/imgcls/decoded; a build logs where and how big, `list_caches` and `clear_caches`
(`imgcls cache --list / --clear`) show and remove them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls.data.decode import load_array
from imgcls.data.names import safe_name
from imgcls.data.transforms import Resize
from imgcls.errors import DataError
from imgcls.limits import human_bytes as human_size
from imgcls.paths import home

log = logging.getLogger(__name__)


_OWN_FILE = re.compile(r"([0-9a-f]{24})\.(u8|json|tmp(\d+))")  # <key>.u8, <key>.json, <key>.tmp<pid>


def default_cache_dir() -> Path:
    """imgcls's home (imgcls.paths: $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls) / decoded."""
    return home() / "decoded"


def _home_short(path: Path) -> str:
    """`path` with the home folder written as ~ (as a user would type it), printable."""
    try:
        return safe_name(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return safe_name(path)


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
            self._build(skip_bad, [name for name, _, _ in stamp])
        index = json.loads(self.index_path.read_text(encoding="utf-8"))
        self.offsets, self.shapes = index["offsets"], index["shapes"]
        self._data: np.memmap | None = None  # opened lazily, once per process (workers too)

    def _build(self, skip_bad: bool, files: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        resize = Resize(self.side)
        offsets, shapes, offset = [], [], 0
        tmp = self.data_path.with_suffix(f".tmp{os.getpid()}")
        log.info("decoding %d images once into %s", len(self.paths), safe_name(self.data_path))
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
        tmp_index.write_text(json.dumps({"side": self.side, "offsets": offsets, "shapes": shapes, "files": files}),
                             encoding="utf-8")
        os.replace(tmp_index, self.index_path)  # the index last: its presence means complete
        log.info("decoded cache: %s images, %s at %s (imgcls cache --clear removes it)", f"{len(files):,}",
                 human_size(offset), _home_short(self.data_path))

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


@dataclass(frozen=True)
class CacheInfo:
    """One decoded cache in a cache folder, as `imgcls cache --list` shows it."""

    key: str
    files: list[Path]  # its .u8, .json and temporary files
    size: int  # bytes, all of its files
    images: int
    created: float  # POSIX time its index was written (an incomplete one: its newest file)
    source: str  # the folder its images came from ("" when incomplete)
    complete: bool  # False: being built, or left behind by an interrupted build


def _own_files(folder: Path) -> dict[str, list[Path]]:
    """imgcls's cache files in `folder`, by key; anything else there is never touched."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give the decoded-cache folder with --dir")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _OWN_FILE.fullmatch(path.name)
        if match and path.is_file():
            found.setdefault(match.group(1), []).append(path)
    return found


def list_caches(dir: str | Path | None = None) -> list[CacheInfo]:
    """The caches in `dir` (default: `default_cache_dir()`), oldest first."""
    infos = []
    for key, files in _own_files(Path(dir) if dir else default_cache_dir()).items():
        index_path, size = files[0].with_name(f"{key}.json"), sum(f.stat().st_size for f in files)
        try:
            names = json.loads(index_path.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            infos.append(CacheInfo(key, files, size, 0, max(f.stat().st_mtime for f in files), "", False))
            continue
        source = os.path.commonpath(names) if len(names) > 1 else os.path.dirname(names[0]) if names else ""
        infos.append(CacheInfo(key, files, size, len(names), index_path.stat().st_mtime, source,
                               index_path.with_suffix(".u8").is_file()))
    return sorted(infos, key=lambda info: info.created)


def _build_running(path: Path) -> bool:
    """Whether `path` is the temporary file of a build that is still running (`<key>.tmp<pid>`)."""
    match = _OWN_FILE.fullmatch(path.name)
    if match is None or match.group(3) is None:
        return False
    try:
        os.kill(int(match.group(3)), 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def clear_caches(dir: str | Path | None = None) -> list[tuple[Path, int]]:
    """Delete every cache in `dir` (default: `default_cache_dir()`): its .u8 and .json files and the
    temporary files of builds that are no longer running; other files are left alone.
    Returns (path, bytes) of what was removed."""
    removed = []
    for files in _own_files(Path(dir) if dir else default_cache_dir()).values():
        for path in files:
            if _build_running(path):
                continue
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append((path, size))
    return removed
