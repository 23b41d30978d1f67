"""Segmentation data: photos with a mask each, whose pixel values are class indices.

Two layouts are read (`mask_layout` recognises them; data.open_parts reads them through `read_mask_parts`):

- folders: `ROOT/{train,val,test}/images/*.jpg` with `ROOT/PART/masks/<stem>.png` (or `ROOT/images` +
  `ROOT/masks`, one part "all"), and `ROOT/classes.json`: {"classes": [names], "void": {"index": 11} (or
  11), "palette": [[r, g, b], ...] per index} (CamVid in ../shared/data/camvid);
- PASCAL VOC: `ROOT/JPEGImages/<id>.jpg`, `ROOT/SegmentationClass/<id>.png` (palette PNGs, 255 on object
  borders), `ROOT/ImageSets/Segmentation/{train,val}.txt`; its 21 classes, void 255 and palette are
  built in (a classes.json in ROOT wins).

A mask is a palette or grey PNG whose values are the class indices (a palette PNG's indices, not its
colours); an RGB mask is mapped through the palette, a colour not in it is refused naming the file.
The void value is ignored by the loss and every metric.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgcls.data.dataset import list_images
from imgcls.data.decode import read_bytes, stored_size
from imgcls.data.names import safe_name
from imgcls.data.split import PARTS
from imgcls.errors import DataError

CLASS_FILE = "classes.json"
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
VOC_VOID = 255
MASK_FIX = "save masks as palette or grey PNGs whose values are class indices"


def voc_palette() -> list[tuple[int, int, int]]:
    """PASCAL VOC's 256 colours (the bits of the index spread over R, G and B, high bits first)."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


@dataclass(frozen=True)
class MaskClasses:
    """The classes of a segmentation set: names in index order, the void value (ignored everywhere) and
    the palette (RGB per value, void's included where known) that colours masks."""

    names: tuple[str, ...]
    void: int
    palette: tuple[tuple[int, int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        """What checkpoints store beside the class names."""
        return {"void": self.void, "palette": [list(c) for c in self.palette]}

    @classmethod
    def from_dict(cls, names: Sequence[str], d: dict[str, Any]) -> MaskClasses:
        return cls(tuple(names), int(d["void"]), tuple(tuple(int(v) for v in c) for c in d["palette"]))

    def colour_of(self, value: int) -> tuple[int, int, int]:
        return self.palette[value] if value < len(self.palette) else (0, 0, 0)


def voc_classes() -> MaskClasses:
    return MaskClasses(VOC_CLASSES, VOC_VOID, tuple(voc_palette()))


def read_class_file(path: Path) -> MaskClasses:
    """classes.json: {"classes": [...], "void": {"index": N} or N, "palette": [[r, g, b], ...]} (palette
    optional: VOC's colours). One DataError naming the file and the key for anything else."""
    def bad(what: str) -> DataError:
        return DataError(f"{safe_name(path)}: {what}; expected {{\"classes\": [names], \"void\": {{\"index\": N}}, "
                         "\"palette\": [[r, g, b], ...]}")

    try:
        d = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad(f"not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise bad("not an object")
    names = d.get("classes")
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise bad("\"classes\" must list at least 2 class names")
    void = d.get("void", VOC_VOID)
    void = void.get("index") if isinstance(void, dict) else void
    if not isinstance(void, int) or isinstance(void, bool) or not len(names) <= void <= 255:
        raise bad(f"\"void\" index {void!r} must be a whole number from {len(names)} (after the classes) to 255")
    palette = d.get("palette", voc_palette())
    ok = isinstance(palette, list) and len(palette) >= len(names) and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette)
    if not ok:
        raise bad(f"\"palette\" must hold an [r, g, b] (0..255) for each of the {len(names)} classes")
    return MaskClasses(tuple(names), void, tuple(tuple(c) for c in palette))


def mask_layout(path: Path) -> str | None:
    """"voc", "folders" (images/ + masks/) or None (not segmentation data)."""
    if (path / "JPEGImages").is_dir() and (path / "SegmentationClass").is_dir():
        return "voc"
    if (path / "masks").is_dir() or any((path / part / "masks").is_dir() for part in PARTS):
        return "folders"
    return None


Pairs = list[tuple[Path, Path]]  # (photo, its mask)


@dataclass
class MaskParts:
    """What `read_mask_parts` found: per part the (photo, mask) pairs, where each part was read, the photos
    without a mask and the masks without a photo."""

    classes: MaskClasses
    parts: dict[str, Pairs]
    roots: dict[str, Path]
    description: str
    missing: dict[str, list[Path]] = field(default_factory=dict)  # part -> photos without a mask
    extra: dict[str, list[Path]] = field(default_factory=dict)  # part -> masks without a photo


def read_mask_parts(path: Path, *, wanted: Sequence[str] | None = None) -> MaskParts:
    """The parts of segmentation set `path` (`mask_layout` says which layout); `wanted`: only those parts."""
    layout = mask_layout(path)
    assert layout is not None, path
    class_file = path / CLASS_FILE
    if class_file.is_file():
        classes = read_class_file(class_file)
    elif layout == "voc":
        classes = voc_classes()
    else:
        raise DataError(f"{safe_name(path)}: segmentation data (a masks/ folder) without {CLASS_FILE}; add one with "
                        "the class names, the void index and the palette (docs/segmentation.md shows CamVid's)")
    found = MaskParts(classes, {}, {}, "")
    if layout == "voc":
        _read_voc(path, found, wanted)
        found.description = f"{path} (PASCAL VOC layout)"
    else:
        folders = [p for p in PARTS if (path / p / "images").is_dir()] or ["all"]
        for part in folders:
            if wanted is None or part in wanted:
                _read_pairs(path if part == "all" else path / part, part, found)
        found.description = " and ".join(str(r) for r in found.roots.values()) + " (photos with masks)"
    return found


def _read_pairs(root: Path, part: str, found: MaskParts) -> None:
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DataError(f"{safe_name(root)}: needs images/ and masks/ folders (each photo's mask: masks/<stem>.png)")
    photos = list_images(images)
    by_stem = {p.stem: p for p in list_images(masks)}
    found.parts[part] = [(p, by_stem[p.stem]) for p in photos if p.stem in by_stem]
    found.missing[part] = [p for p in photos if p.stem not in by_stem]
    stems = {p.stem for p in photos}
    found.extra[part] = [m for s, m in sorted(by_stem.items()) if s not in stems]
    found.roots[part] = root


def _read_voc(path: Path, found: MaskParts, wanted: Sequence[str] | None) -> None:
    lists = path / "ImageSets" / "Segmentation"
    names = [p for p in PARTS if (lists / f"{p}.txt").is_file()]
    if not names:
        raise DataError(f"{safe_name(path)}: PASCAL VOC layout without ImageSets/Segmentation/train.txt or val.txt; "
                        "add the lists of image ids of each part")
    for part in names:
        if wanted is not None and part not in wanted:
            continue
        ids = [line.strip() for line in (lists / f"{part}.txt").read_text().splitlines() if line.strip()]
        pairs, missing = [], []
        for i in ids:
            photo, mask = path / "JPEGImages" / f"{i}.jpg", path / "SegmentationClass" / f"{i}.png"
            (pairs.append((photo, mask)) if mask.exists() else missing.append(photo))
        found.parts[part], found.missing[part], found.extra[part] = pairs, missing, []
        found.roots[part] = path


def load_mask(path: str | Path, classes: MaskClasses, *, data: bytes | None = None) -> np.ndarray:
    """The mask as an HxW uint8 array of class indices (void as it is). Palette (its indices) and grey PNGs
    as stored; 16-bit grey when every value fits 0..255; an RGB(A) mask through `classes.palette`. A
    DataError naming the file for anything else."""
    path = Path(path)
    data = read_bytes(path) if data is None else data
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{safe_name(path)}: not a readable mask ({type(e).__name__}: {e}); {MASK_FIX}") from None
    if mode in ("P", "L"):
        return arr
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        if arr.size and (arr.max() > 255 or arr.min() < 0):
            raise DataError(f"{safe_name(path)}: a 16-bit mask with values up to {int(arr.max())}; class indices and "
                            f"the void value must fit 0..255; {MASK_FIX}")
        return arr.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        return _from_colours(path, arr[..., :3], classes)
    raise DataError(f"{safe_name(path)}: a {mode} image, not a mask; {MASK_FIX}")


def _from_colours(path: Path, rgb: np.ndarray, classes: MaskClasses) -> np.ndarray:
    """An RGB mask through the palette: each colour its index (the first index with that colour)."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    lookup: dict[int, int] = {}
    for i, (r, g, b) in enumerate(classes.palette):
        lookup.setdefault((r << 16) | (g << 8) | b, i)
    values, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(v) for v in values if int(v) not in lookup]
    if unknown:
        ys, xs = np.nonzero(codes == unknown[0])
        c = unknown[0]
        raise DataError(f"{safe_name(path)}: an RGB mask with colour ({c >> 16}, {(c >> 8) & 255}, {c & 255}) at "
                        f"x={xs[0]} y={ys[0]}, which is not in the palette; {MASK_FIX}, or add the colour to "
                        f"{CLASS_FILE}'s palette")
    return np.array([lookup[int(v)] for v in values], dtype=np.uint8)[inverse].reshape(codes.shape)


@dataclass
class MaskScan:
    """What reading every mask of a part found: per-value pixel counts (256 bins) and the problems, each
    (mask file, what is wrong)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    problems: list[tuple[Path, str]] = field(default_factory=list)


def scan_masks(pairs: Pairs, classes: MaskClasses, *, workers: int = 2) -> MaskScan:
    """Decode every mask: its size against its photo's (header only), values that are neither a class nor
    void, and the pixel count of every value."""
    from concurrent.futures import ThreadPoolExecutor

    n = len(classes.names)

    def probe(pair: tuple[Path, Path]) -> tuple[np.ndarray | None, tuple[Path, str] | None]:
        photo, mask_path = pair
        try:
            mask = load_mask(mask_path, classes)
        except DataError as e:
            return None, (mask_path, str(e).removeprefix(f"{safe_name(mask_path)}: "))
        try:
            w, h = stored_size(photo, read_bytes(photo))
        except DataError:  # the photo's own problem, which the photo check reports
            w, h = mask.shape[1], mask.shape[0]
        counts = np.bincount(mask.ravel(), minlength=256)
        if mask.shape != (h, w):
            return counts, (mask_path, f"{mask.shape[1]}x{mask.shape[0]} px, its photo {safe_name(photo.name)} is "
                                       f"{w}x{h}; a mask must have its photo's size")
        bad = [v for v in np.nonzero(counts)[0] if v >= n and v != classes.void]
        if bad:
            return counts, (mask_path, f"values {', '.join(map(str, bad[:5]))} are neither a class (0..{n - 1}) "
                                       f"nor void ({classes.void})")
        return counts, None

    scan = MaskScan()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for counts, problem in pool.map(probe, pairs):
            if counts is not None:
                scan.counts += counts
            if problem is not None:
                scan.problems.append(problem)
    return scan
