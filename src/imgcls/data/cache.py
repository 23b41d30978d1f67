"""A decoded-image cache: every image decoded once, shorter side resized, in one memory-mapped file.

Decoding JPEGs is most of a CNN input pipeline's cost on a CPU. The cache stores each image as
uint8 HWC pixels with its shorter side resized to `side` (256 by default, what eval resizes to
anyway; train crops then come from that image instead of the full-size one). The file is keyed
by every source file's path, size and modification time and by `side`, so a changed, added or
removed file makes a new cache instead of stale pixels; it is written to a temporary name and
renamed, so an interrupted build leaves nothing half-written behind.

The files of one cache, each recognised by its content as well as its name, so that a file that
only looks like one is never touched: `<key>.u8` (a magic line, then the pixels), `<key>.json`
(the index: its "format" field), `<key>.tmp<pid>` (a build under way: either of the two), and
`<key>.<pid>.<random>.inuse`, a marker that every process building or reading the cache holds
until its DecodedCache is collected or the process ends. `clear_caches` keeps a cache that a live
process holds and removes the markers of processes that are gone (kill -9).

Caches live in $IMGCLS_HOME/decoded, else $XDG_CACHE_HOME/imgcls/decoded, else
~/.cache/imgcls/decoded; a build logs where and how big, `list_caches` and `clear_caches`
(`imgcls cache --list / --clear`) show and remove them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgcls.data.decode import load_array
from imgcls.data.names import safe_name
from imgcls.data.transforms import Resize
from imgcls.errors import DataError
from imgcls.limits import human_bytes as human_size
from imgcls.paths import home, process_alive

log = logging.getLogger(__name__)

FORMAT, VERSION = "imgcls decoded cache", 2
_DATA_MAGIC = b"imgcls decoded cache 2\n"  # the first bytes of every .u8 file
_INDEX_START = json.dumps({"format": FORMAT})[:-1].encode()  # how every index's text begins
_MARKER = "imgcls decoded cache, in use by process "
# <key>.u8 | <key>.json | <key>.tmp<pid> | <key>.<pid>.<random>.inuse
_NAME = re.compile(r"([0-9a-f]{24})\.(?:(u8|json)|tmp(\d+)|(\d+)\.\w+\.inuse)")


def default_cache_dir() -> Path:
    """imgcls's home (imgcls.paths: $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls) / decoded."""
    return home() / "decoded"


def _home_short(path: Path) -> str:
    """`path` with the home folder written as ~ (as a user would type it), printable."""
    try:
        return safe_name(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return safe_name(path)


@contextlib.contextmanager
def _locked(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """The cache folder's lock: `clear_caches` holds it exclusively while it decides and removes, a new
    holder shares it while it writes its marker, so no cache is removed between the two."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _hold(folder: Path, key: str) -> Path:
    """Write this process's in-use marker of cache `key` (see the module docstring)."""
    with _locked(folder, exclusive=False):
        fd, name = tempfile.mkstemp(prefix=f"{key}.{os.getpid()}.", suffix=".inuse", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{_MARKER}{os.getpid()}\n")
    return Path(name)


def _release(marker: Path, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked DataLoader worker that collects its copy of the dataset
        marker.unlink(missing_ok=True)


def _starts_with(path: Path, *prefixes: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(64).startswith(prefixes)
    except OSError:
        return False


def _load_index(path: Path) -> dict | None:
    """The index at `path` when it is an imgcls cache index (its "format"), else None (missing or not ours)."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and index.get("format") == FORMAT else None


def _brief(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _index_problem(index: dict, data: Path, images: int | None = None) -> str:
    """What makes an index (and its pixel file `data`) unusable, or "" when nothing does."""
    files, offsets, shapes, size = (index.get(k) for k in ("files", "offsets", "shapes", "size"))
    if index.get("version") != VERSION:
        return f"its index is of format version {_brief(index.get('version'))}, this imgcls reads {VERSION}"
    if not isinstance(files, list) or not all(isinstance(f, str) and os.path.isabs(f) for f in files):
        return f'its index\'s "files" is {_brief(files)}, not a list of file paths'
    if images is not None and len(files) != images:
        return f"its index lists {len(files)} images, not {images}"
    if not isinstance(offsets, list) or len(offsets) != len(files) or not all(type(o) is int for o in offsets):
        return f'its index\'s "offsets" is {_brief(offsets)}, not one integer per file'
    if not isinstance(shapes, list) or len(shapes) != len(files) or not all(
            isinstance(s, list) and len(s) == 3 and s[2] == 3 and all(type(v) is int and v >= 0 for v in s)
            for s in shapes):
        return f'its index\'s "shapes" is {_brief(shapes)}, not one [height, width, 3] per file'
    if type(size) is not int:
        return f'its index\'s "size" is {_brief(size)}, not a number of bytes'
    if not _starts_with(data, _DATA_MAGIC):
        return f"its pixel file {data.name} is missing or not imgcls's"
    if _size(data)[0] != size:
        return f"its pixel file is {human_size(_size(data)[0])}, its index says {human_size(size)}"
    if any(o < len(_DATA_MAGIC) or o + h * w * c > size for o, (h, w, c) in zip(offsets, shapes)):
        return "its index points outside the pixel file"
    return ""


class DecodedCache:
    def __init__(self, paths: list[Path], *, side: int = 256, cache_dir: str | Path | None = None,
                 skip_bad: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.side = side
        self.dir = Path(cache_dir) if cache_dir else default_cache_dir()
        stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.paths]
        self.key = hashlib.sha256(json.dumps([VERSION, side, stamp]).encode()).hexdigest()[:24]
        self.data_path = self.dir / f"{self.key}.u8"
        self.index_path = self.dir / f"{self.key}.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        # held until this object is collected or the process ends: `imgcls cache --clear` keeps the cache
        self._release = weakref.finalize(self, _release, _hold(self.dir, self.key), os.getpid())
        try:
            self.offsets, self.shapes = self._open(skip_bad, [name for name, _, _ in stamp])
            # mapped now, in this process: DataLoader workers forked from it share the mapping, which stays
            # readable even should the files be deleted
            self._data: np.memmap | None = self._map()
        except BaseException:
            self._release()  # a cache that failed to open is held by no one
            raise

    def _open(self, skip_bad: bool, files: list[str]) -> tuple[list[int], list[list[int]]]:
        """(offsets, shapes) of a complete cache: the one on disk, else (missing or damaged) a new build."""
        index = _load_index(self.index_path)
        problem = _index_problem(index, self.data_path, len(self.paths)) if index else ""
        if problem or not index:
            if self.index_path.exists():
                log.warning("%s: a damaged decoded cache (%s); building it again", _home_short(self.index_path),
                            problem or "its index is not an imgcls cache index")
            self._build(skip_bad, files)
            index = _load_index(self.index_path)
            if not index or _index_problem(index, self.data_path, len(self.paths)):
                raise self._lost()
        return index["offsets"], index["shapes"]

    def _build(self, skip_bad: bool, files: list[str]) -> None:
        resize = Resize(self.side)
        offsets, shapes = [], []
        tmp = self.dir / f"{self.key}.tmp{os.getpid()}"  # the pixels, then the index
        log.info("decoding %d images once into %s", len(self.paths), safe_name(self.data_path))
        try:
            with open(tmp, "wb") as f:
                f.write(_DATA_MAGIC)
                offset = len(_DATA_MAGIC)
                for path in self.paths:
                    try:
                        pixels = np.asarray(resize(load_array(path, min_side=self.side)), dtype=np.uint8)
                    except DataError:
                        if not skip_bad:
                            raise
                        pixels = np.zeros((0, 0, 3), dtype=np.uint8)  # read back as "bad"
                    f.write(pixels.tobytes())
                    offsets.append(offset)
                    shapes.append(list(pixels.shape))
                    offset += pixels.size
            os.replace(tmp, self.data_path)
            tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION, "side": self.side, "size": offset,
                                       "offsets": offsets, "shapes": shapes, "files": files}), encoding="utf-8")
            os.replace(tmp, self.index_path)  # the index last: its presence means complete
        finally:
            tmp.unlink(missing_ok=True)
        log.info("decoded cache: %s images, %s at %s (imgcls cache --clear removes it)", f"{len(files):,}",
                 human_size(offset), _home_short(self.data_path))

    def _lost(self) -> DataError:
        return DataError(f"{_home_short(self.data_path)}: the decoded cache was removed while this run used it "
                         "(deleted by hand?); run again to build it anew, or train without --cache")

    def _map(self) -> np.memmap:
        try:
            return np.memmap(self.data_path, dtype=np.uint8, mode="r")
        except FileNotFoundError:
            raise self._lost() from None

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        # a spawned worker maps the file itself, and holds no marker: the process that made the cache does
        return {k: v for k, v in self.__dict__.items() if k != "_release"} | {"_data": None}

    def array(self, i: int) -> np.ndarray:
        """Image `i` as a read-only HWC uint8 view of the mapped file (no copy)."""
        h, w, c = self.shapes[i]
        if h == 0:
            raise DataError(f"{self.paths[i]}: not a readable image (found when the cache was built)")
        if self._data is None:
            self._data = self._map()
        start = self.offsets[i]
        return np.asarray(self._data[start:start + h * w * c]).reshape(h, w, c)

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(self.array(i))


@dataclass
class _Found:
    """The files of one cache key that are imgcls's (by content), with the pids their names carry."""

    data: Path | None = None
    index: tuple[Path, dict] | None = None
    temps: dict[Path, int] = field(default_factory=dict)
    markers: dict[Path, int] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return sorted([*([self.data] if self.data else []), *([self.index[0]] if self.index else []),
                       *self.temps, *self.markers])


def _own_files(dir: str | Path | None) -> dict[str, _Found]:
    """imgcls's cache files in `dir` (default: `default_cache_dir()`, which may not exist yet), by key;
    anything else there, a file merely named like one included, is never touched."""
    folder = Path(dir) if dir else default_cache_dir()
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise DataError(f"{safe_name(folder)}: not a folder; give the decoded-cache folder with --dir")
        if dir:
            raise DataError(f"{safe_name(folder)}: no such folder; give the decoded-cache folder with --dir "
                            f"(the default is {_home_short(default_cache_dir())})")
        return {}
    found: dict[str, _Found] = {}
    for path in sorted(folder.iterdir()):
        match = _NAME.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_file():  # imgcls writes no links
            continue
        key, kind, build, holder = match.groups()
        own = found.setdefault(key, _Found())
        if kind == "u8" and _starts_with(path, _DATA_MAGIC):
            own.data = path
        elif kind == "json" and (index := _load_index(path)) is not None:
            own.index = path, index
        elif build and _starts_with(path, _DATA_MAGIC, _INDEX_START):
            own.temps[path] = int(build)
        elif holder and _starts_with(path, _MARKER.encode()):
            own.markers[path] = int(holder)
    return {key: own for key, own in found.items() if own.files}


@dataclass(frozen=True)
class CacheInfo:
    """One decoded cache in a cache folder, as `imgcls cache --list` shows it."""

    key: str
    files: list[Path]  # its .u8, .json, temporary and in-use marker files
    size: int  # bytes, all of its files
    images: int
    created: float  # POSIX time its index was written (else: its newest file)
    source: str  # the folder its images came from ("" unless complete)
    problem: str  # "" when complete; else why not: "being built", "damaged: <how>", "left by a stopped build"
    users: list[int]  # the live processes that build or read it: clear_caches keeps it

    @property
    def complete(self) -> bool:
        return not self.problem


def _size(path: Path) -> tuple[int, float]:
    """(bytes, modification time) of `path`; (0, 0) should it be gone meanwhile."""
    try:
        st = path.stat()
    except OSError:
        return 0, 0.0
    return st.st_size, st.st_mtime


def _info(key: str, own: _Found) -> CacheInfo:
    users = sorted({pid for pid in [*own.temps.values(), *own.markers.values()] if process_alive(pid)})
    stats = [_size(f) for f in own.files]
    size, created = sum(s for s, _ in stats), max(t for _, t in stats)
    images, source, problem = 0, "", ""
    if any(process_alive(pid) for pid in own.temps.values()):
        problem = "being built"
    elif own.index:
        path, index = own.index
        problem = _index_problem(index, path.with_suffix(".u8"))
        if problem:
            problem = f"damaged: {problem}"
        else:
            names = index["files"]
            images, created = len(names), _size(path)[1]
            source = os.path.commonpath(names) if len(names) > 1 else os.path.dirname(names[0]) if names else ""
    elif own.data:
        problem = "damaged: its index is missing"
    elif own.temps:
        problem = "left by a stopped build"
    else:  # markers only: a process that is about to build it, or one that was killed
        problem = "being built" if users else "left by a stopped process"
    return CacheInfo(key, own.files, size, images, created, source, problem, users)


def list_caches(dir: str | Path | None = None) -> list[CacheInfo]:
    """The caches in `dir` (default: `default_cache_dir()`), oldest first; a `dir` that does not exist is a
    DataError."""
    return sorted((_info(key, own) for key, own in _own_files(dir).items()), key=lambda info: info.created)


@dataclass
class Cleared:
    """What `clear_caches` did: the files it removed with their sizes, and the caches it kept because a
    live process builds or reads them."""

    removed: list[tuple[Path, int]]
    in_use: list[CacheInfo]


def clear_caches(dir: str | Path | None = None) -> Cleared:
    """Delete every cache in `dir` (default: `default_cache_dir()`) that no live process holds: its .u8 and
    .json files, the temporary files of stopped builds and the markers of stopped processes; files that
    are not imgcls's are left alone."""
    removed, in_use = [], []
    folder = Path(dir) if dir else default_cache_dir()
    with _locked(folder, exclusive=True) if folder.is_dir() else contextlib.nullcontext():
        for key, own in _own_files(dir).items():
            info = _info(key, own)
            if info.users:
                in_use.append(info)
                continue
            for path in sorted(own.files, key=lambda p: p in own.markers):  # the markers last
                size = _size(path)[0]
                path.unlink(missing_ok=True)
                removed.append((path, size))
    return Cleared(removed, in_use)
