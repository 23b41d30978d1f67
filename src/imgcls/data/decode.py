"""Opening images safely: any mode to RGB, EXIF orientation applied, JPEG draft-mode reduction.

`load_array` returns the same pixels as `load_image` as an HWC uint8 array, and decodes plain
JPEGs (RGB or grey, no EXIF rotation, no draft reduction) with simplejpeg, which calls the
same libjpeg-turbo as Pillow without Pillow's per-image overhead: about 25% faster on the
flower photos, identical pixels (tested). Everything else, and anything simplejpeg refuses,
goes through Pillow. Every error is a DataError that names the file and says what it is instead
of Pillow's "cannot identify image file <_io.BytesIO ...>": empty, text, a saved web page, a broken
or looping symbolic link.

Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients, which
is several times faster than a full decode followed by a downscale. Pillow only reduces while the
result stays at least the requested size, so with `min_side=256` an eval pipeline's Resize(256)
still downsamples (never upsamples); the pixels differ slightly from a full-size decode (DCT
scaling instead of a bilinear filter), which is why draft mode is opt-in per call.

Huge photos are the exception: a caller that names the side it resizes to (`resize=`, as predict,
eval, cam and serve do) gets a JPEG above REDUCE_ABOVE_PIXELS decoded reduced to no less than that
side, so a 20000 x 20000 photo is held as 2500 x 2500 pixels (19 MB) instead of 1.2 GB; every JPEG up
to that size keeps its exact pixels. The decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS) counts
the pixels a decode holds: a JPEG at the size it decodes to, a progressive JPEG at full size (libjpeg
keeps all its coefficients whatever the scale), any other format at full size (no reduced decoding).
"""
from __future__ import annotations

import errno
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from imgcls.data.names import safe_name
from imgcls.errors import DataError
from imgcls.limits import REDUCE_ABOVE_PIXELS

try:
    import simplejpeg
except ImportError:  # optional at run time: Pillow decodes everything without it
    simplejpeg = None

EXIF_ORIENTATION = 0x0112

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# a DataError's advice for an unreadable image, in the flags of train/eval/predict (see errors.DataError)
REPLACE_OR_SKIP = "delete or replace it, or pass --skip-bad"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_file_or_link(path: Path) -> bool:
    """A file, or a symbolic link that does not lead to a folder: broken and looping links included, so
    that reading them reports why instead of a scan skipping them without a word."""
    return path.is_file() or path.is_symlink() and not path.is_dir()


Data = bytes | IO[bytes]  # a file's bytes already read, or an open binary file (an upload's spool)


def load_image(path: str | Path, *, min_side: int | None = None, resize: int | None = None,
               data: Data | None = None) -> Image.Image:
    """Decode `path` to an RGB image; with `min_side`, JPEGs decode reduced but keep that shorter side.

    `resize`: the shorter side the caller resizes the image to; a JPEG above REDUCE_ABOVE_PIXELS then
    decodes as with `min_side=resize`, any other exactly. `data`, when given, is the file's bytes or an
    open binary file (errors still name `path`).

    Raises DataError naming the file for unreadable, truncated and decompression-bomb images.
    """
    return _decode(Path(path), min_side, resize, data, as_array=False)


def load_array(path: str | Path, *, min_side: int | None = None, resize: int | None = None,
               data: Data | None = None) -> np.ndarray:
    """`load_image` as an HWC uint8 RGB array (read-only when Pillow decoded it), faster for JPEGs."""
    return _decode(Path(path), min_side, resize, data, as_array=True)


def decoded_size(path: str | Path, *, min_side: int | None = None, resize: int | None = None,
                 data: Data | None = None) -> tuple[int, int]:
    """(width, height) that `load_image` with the same arguments decodes to (before EXIF rotation), read
    from the header alone; the same DataError for a file it would refuse, decompression bombs included."""
    path = Path(path)
    data = read_bytes(path) if data is None else data
    with _named_errors(path, data), _opened(path, data, min_side, resize) as (img, _):
        return img.size


def stored_size(path: str | Path, data: Data) -> tuple[int, int]:
    """(width, height) of the image as shown (EXIF rotation applied), from the header alone and whatever
    its size; DataError for a file that is not an image."""
    path = Path(path)
    with _named_errors(path, data), _header(data) as img:
        w, h = img.size
        return (h, w) if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (w, h)


def _draft_size(size: tuple[int, int], min_side: int | None) -> tuple[int, int] | None:
    """The size to ask Pillow's draft for, or None when no DCT reduction is possible."""
    w, h = size
    if min_side is None or min(w, h) < 2 * min_side:  # draft reduces by 2, 4 or 8 only
        return None
    scale = min_side / min(w, h)
    return max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a DataError that says why not: missing, a broken or looping link, a folder."""
    try:
        return path.read_bytes()
    except OSError as e:
        why, advice = _why_unopenable(path, e)
        raise DataError(f"{safe_name(path)}: {why}", advice) from None


def _why_unopenable(path: Path, e: OSError) -> tuple[str, str]:
    """(what is wrong, what to do)."""
    if path.is_symlink() and e.errno in (errno.ENOENT, errno.ELOOP):
        target = safe_name(os.readlink(path))
        link = f"symbolic link loop (-> {target})" if e.errno == errno.ELOOP else f"broken symbolic link -> {target}"
        return link, "fix or delete the link, or pass --skip-bad"
    if e.errno == errno.ENOENT:
        return "no such file", ""
    return f"cannot read it ({e.strerror})", REPLACE_OR_SKIP


def _sniff(head: bytes) -> str:
    """What a file that Pillow cannot identify seems to be, from its first bytes."""
    if not head:
        return "empty file"
    if b"<html" in head.lower() or b"<!doctype html" in head.lower():
        return "looks like HTML (a saved web page?)"
    if _is_text(head):
        return "looks like text"
    return f"unknown format (first bytes 0x{head[:8].hex()})"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # more than a character cut in two at the end
            return False
        text = head[:e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def _decode(path: Path, min_side: int | None, resize: int | None, data: Data | None, *, as_array: bool):
    data = read_bytes(path) if data is None else data
    with _named_errors(path, data), _opened(path, data, min_side, resize) as (img, reduced):
        if (as_array and simplejpeg is not None and isinstance(data, bytes) and img.format == "JPEG" and not reduced
                and img.mode in ("RGB", "L") and img.getexif().get(EXIF_ORIENTATION, 1) == 1):
            try:
                return simplejpeg.decode_jpeg(data, colorspace="RGB")
            except ValueError:
                pass  # Pillow decodes it or says what is wrong with it
        img.load()
        img = _to_rgb(ImageOps.exif_transpose(img))
        return np.asarray(img) if as_array else img


@contextmanager
def _header(data: Data) -> Iterator[Image.Image]:
    """The image with only its header read. Pillow refuses any image above MAX_IMAGE_PIXELS here, but
    not a JPEG: it may decode reduced, so `_opened` checks the pixels its decode will hold instead."""
    fp = io.BytesIO(data) if isinstance(data, bytes) else data
    fp.seek(0)
    jpeg = fp.read(3) == b"\xff\xd8\xff"  # the start-of-image marker
    fp.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = _jpeg_header(fp) if jpeg else None
        with img if img is not None else Image.open(fp) as opened:
            yield opened


def _jpeg_header(fp: IO[bytes]) -> Image.Image | None:
    """The JPEG's header as Image.open reads it, without its size check; None if it is not one after all
    (Image.open then says what it is)."""
    try:
        return JpegImagePlugin.jpeg_factory(fp)
    except (SyntaxError, IndexError, TypeError, OSError):
        fp.seek(0)
        return None


@contextmanager
def _opened(path: Path, data: Data, min_side: int | None, resize: int | None
            ) -> Iterator[tuple[Image.Image, bool]]:
    """(the image with its header read and JPEG draft mode set, whether it decodes reduced): what its
    decode will hold is known and checked against the decompression-bomb limit; nothing is decoded yet."""
    with _header(data) as img:
        w, h = img.size
        if img.format == "JPEG":
            if min_side is None and resize is not None and w * h > REDUCE_ABOVE_PIXELS:
                min_side = resize
            draft = _draft_size((w, h), min_side)
            if draft is not None:
                img.draft("RGB", draft)
        # libjpeg holds every coefficient of a progressive JPEG whatever the scale it decodes at
        progressive = bool(img.info.get("progressive"))
        held = w * h if progressive else img.width * img.height
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and held > limit:
            kind = " progressive JPEG, held whole at any scale" if progressive else ""
            raise DataError(f"{safe_name(path)}: refused as a possible decompression bomb ({w}x{h} px{kind}: "
                            f"{held / 1e6:.1f} MP to decode, above the limit of {limit / 1e6:.1f} MP); shrink it, "
                            "or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it")
        yield img, img.size != (w, h)


@contextmanager
def _named_errors(path: Path, data: Data) -> Iterator[None]:
    """Pillow's errors as one DataError naming the file and what is wrong with it."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{safe_name(path)}: refused as a possible decompression bomb ({e}); only JPEGs decode "
                        "reduced: shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
    except UnidentifiedImageError:  # its message names the BytesIO, not the file: say what the file is
        raise DataError(f"{safe_name(path)}: not an image: {_sniff(_head(data))}", REPLACE_OR_SKIP) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{safe_name(path)}: not a readable image ({type(e).__name__}: {e})", REPLACE_OR_SKIP) from None


def _head(data: Data) -> bytes:
    if isinstance(data, bytes):
        return data[:1024]
    data.seek(0)
    return data.read(1024)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits, not clip
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("RGBA", "LA"):  # composite on white, as a viewer shows it, instead of black
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


# Never silently accept truncated JPEGs: Pillow's default already refuses them; keep it so.
ImageFile.LOAD_TRUNCATED_IMAGES = False
