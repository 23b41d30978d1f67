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
"""
from __future__ import annotations

import errno
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgcls.data.names import safe_name
from imgcls.errors import DataError

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


def load_image(path: str | Path, *, min_side: int | None = None, data: bytes | None = None) -> Image.Image:
    """Decode `path` to an RGB image; with `min_side`, JPEGs decode reduced but keep that shorter side.

    `data`, when given, is the file's bytes already read (errors still name `path`).

    Raises DataError naming the file for unreadable, truncated and decompression-bomb images.
    """
    return _decode(Path(path), min_side, data, as_array=False)


def load_array(path: str | Path, *, min_side: int | None = None, data: bytes | None = None) -> np.ndarray:
    """`load_image` as an HWC uint8 RGB array (read-only when Pillow decoded it), faster for JPEGs."""
    return _decode(Path(path), min_side, data, as_array=True)


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


def _sniff(data: bytes) -> str:
    """What a file that Pillow cannot identify seems to be, from its first bytes."""
    if not data:
        return "empty file"
    head = data[:1024]
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


def _decode(path: Path, min_side: int | None, data: bytes | None, *, as_array: bool):
    if data is None:
        data = read_bytes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # header only, bomb check
                draft = _draft_size(img.size, min_side) if img.format == "JPEG" else None
                if (as_array and simplejpeg is not None and img.format == "JPEG" and draft is None
                        and img.mode in ("RGB", "L") and img.getexif().get(EXIF_ORIENTATION, 1) == 1):
                    try:
                        return simplejpeg.decode_jpeg(data, colorspace="RGB")
                    except ValueError:
                        pass  # Pillow decodes it or says what is wrong with it
                if draft is not None:
                    img.draft("RGB", draft)
                img.load()
                img = _to_rgb(ImageOps.exif_transpose(img))
                return np.asarray(img) if as_array else img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{safe_name(path)}: refused as a possible decompression bomb ({e}); remove the file or "
                        "raise PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
    except UnidentifiedImageError:  # its message names the BytesIO, not the file: say what the file is
        raise DataError(f"{safe_name(path)}: not an image: {_sniff(data)}", REPLACE_OR_SKIP) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{safe_name(path)}: not a readable image ({type(e).__name__}: {e})", REPLACE_OR_SKIP) from None


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
