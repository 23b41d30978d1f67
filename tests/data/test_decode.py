import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imgcls.data import load_array, load_image
from imgcls.data.decode import REDUCE_ABOVE_PIXELS, decoded_size, stored_size
from imgcls.errors import DataError
from tests.conftest import flat_jpeg


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "I;16", "1", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    img = Image.new(mode, (7, 5))
    path = _save(img, tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png"))
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (7, 5)


def test_palette_with_transparency_composites_on_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0] * 256)
    path = _save(img, tmp_path / "p.png", transparency=0)
    assert np.asarray(load_image(path)).min() == 255  # fully transparent black -> white, not black


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    img = Image.fromarray(np.full((3, 3), 40000, dtype=np.uint16))
    out = np.asarray(load_image(_save(img, tmp_path / "g.png")))
    assert (out == 40000 // 256).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = _save(img, tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


@pytest.mark.parametrize("content,match", [(b"", "empty file"), (b"hello, I am text", "not an image: looks like text")])
def test_unreadable_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"bad\.jpg: .*{match}"):
        load_image(path)


def test_truncated_jpeg_is_refused(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: not a readable image"):
        load_image(path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(Image.new("L", (300, 300)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 2 - 1)  # warning threshold
    with pytest.raises(DataError, match=r"bomb\.png: refused as a possible decompression bomb"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_one_pixel_image(tmp_path):
    assert load_image(_save(Image.new("RGB", (1, 1)), tmp_path / "one.png")).size == (1, 1)


def test_draft_mode_keeps_the_shorter_side(tmp_path):
    path = _save(Image.effect_noise((1000, 600), 40).convert("RGB"), tmp_path / "big.jpg", quality=90)
    full = load_image(path)
    reduced = load_image(path, min_side=256)
    assert full.size == (1000, 600)
    assert reduced.size == (500, 300)  # 1/2 scale: 1/4 would make the shorter side 150 < 256
    assert min(load_image(path, min_side=100).size) >= 100


def _jpeg(path, img, **kw):
    img.save(path, "JPEG", quality=92, **kw)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_load_array_gives_load_image_pixels(tmp_path, mode):
    # plain RGB and grey JPEGs go through simplejpeg, CMYK through Pillow: same pixels either way
    img = Image.effect_noise((61, 47), 60).convert(mode)
    path = _jpeg(tmp_path / f"{mode}.jpg", img)
    arr = load_array(path)
    assert arr.dtype == np.uint8 and arr.shape == (47, 61, 3)
    assert np.array_equal(arr, np.asarray(load_image(path)))


def test_load_array_applies_exif_orientation_and_draft(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _jpeg(tmp_path / "r.jpg", Image.new("RGB", (40, 20), (255, 0, 0)), exif=exif.tobytes())
    assert load_array(rotated).shape == (40, 20, 3)
    big = _jpeg(tmp_path / "big.jpg", Image.effect_noise((1000, 600), 40).convert("RGB"))
    assert np.array_equal(load_array(big, min_side=256), np.asarray(load_image(big, min_side=256)))
    assert load_array(big, min_side=256).shape == (300, 500, 3)


def test_load_array_refuses_what_load_image_refuses(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"cut\.jpg: not a readable image"):
        load_array(cut)
    with pytest.raises(DataError, match=r"empty\.jpg: .*empty file"):
        load_array(empty)
    with pytest.raises(DataError, match="no such file"):
        load_array(tmp_path / "nope.jpg")


@pytest.mark.parametrize("content, says", [
    (b"\xef\xbb\xbf  <!doctype HTML><title>Flickr</title>", "looks like HTML (a saved web page?)"),
    ("день, ночь\n".encode(), "looks like text"),
    (b"\x00\x01\x02\x03binary", "unknown format (first bytes 0x0001020362696e61)"),
])
@pytest.mark.parametrize("load", [load_image, load_array])
def test_a_file_that_is_not_an_image_says_what_it_looks_like(tmp_path, content, says, load):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load(path)
    assert str(e.value) == f"{path}: not an image: {says}; delete or replace it, or pass --skip-bad"


def test_broken_and_looping_links_say_so(tmp_path):
    (tmp_path / "gone.jpg").symlink_to("elsewhere/x.jpg")
    (tmp_path / "l1.jpg").symlink_to("l2.jpg")
    (tmp_path / "l2.jpg").symlink_to("l1.jpg")
    with pytest.raises(DataError, match=r"gone\.jpg: broken symbolic link -> elsewhere/x\.jpg; fix or delete the link"):
        load_image(tmp_path / "gone.jpg")
    with pytest.raises(DataError, match=r"l1\.jpg: symbolic link loop \(-> l2\.jpg\)"):
        load_array(tmp_path / "l1.jpg")
    with pytest.raises(DataError, match=r"cannot read it \(Is a directory\)"):
        load_image(tmp_path)


# -- huge photos: reduced decoding above REDUCE_ABOVE_PIXELS, the bomb limit on the pixels held -----

def test_a_huge_jpeg_decodes_reduced_to_the_resize_side(tmp_path):
    path = flat_jpeg(tmp_path / "huge.jpg", 20000, 20000)  # 400 MP: 1.2 GB as RGB, 4.5 x the bomb limit
    image = load_image(path, resize=256)
    assert image.size == (2500, 2500) and image.getextrema() == ((128, 128),) * 3  # 1/8 scale keeps >= 256
    assert load_array(path, resize=256).shape == (2500, 2500, 3)
    assert decoded_size(path, resize=256) == (2500, 2500) and stored_size(path, path.read_bytes()) == (20000, 20000)
    with pytest.raises(DataError, match=r"huge\.jpg: refused as a possible decompression bomb \(20000x20000 px: "
                                        r"400\.0 MP to decode, above the limit of 89\.5 MP\)"):
        load_image(path)  # no resize side given: nothing to reduce to


def test_jpegs_up_to_the_threshold_keep_their_exact_pixels(tmp_path):
    side = 4096  # REDUCE_ABOVE_PIXELS is exactly 4096 x 4096
    assert REDUCE_ABOVE_PIXELS == side * side
    at = flat_jpeg(tmp_path / "at.jpg", side, side)
    above = flat_jpeg(tmp_path / "above.jpg", side + 32, side)
    assert decoded_size(at, resize=256) == (side, side)
    assert decoded_size(above, resize=256) == ((side + 32) // 8, side // 8)
    assert decoded_size(above, resize=1024) == ((side + 32) // 4, side // 4)  # never below the resize side


def test_a_progressive_jpeg_counts_at_full_size(tmp_path, monkeypatch):
    """libjpeg holds all coefficients of a progressive JPEG at any scale: reducing saves no memory."""
    img = Image.effect_noise((600, 600), 40).convert("RGB")
    baseline, progressive = _jpeg(tmp_path / "b.jpg", img), _jpeg(tmp_path / "p.jpg", img, progressive=True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    assert load_image(baseline, min_side=64).size == (75, 75)  # 5,625 px held
    with pytest.raises(DataError, match=r"p\.jpg: refused as a possible decompression bomb \(600x600 px "
                                        r"progressive JPEG, held whole at any scale: 0\.4 MP to decode, "
                                        r"above the limit of 0\.1 MP"):
        load_image(progressive, min_side=64)


def test_other_huge_formats_are_refused_from_their_header(tmp_path):
    """Only JPEGs decode reduced: a 20000 x 20000 PNG is refused before a byte of it is decoded."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 20000, 20000)  # IHDR: width, height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(data[12:29]))
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        load_image(path, resize=256)
    assert str(e.value).startswith(f"{path}: refused as a possible decompression bomb (Image size (400000000 pixels)")
    assert str(e.value).endswith("; only JPEGs decode reduced: shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS if "
                                 "you trust it")


def test_an_open_file_decodes_as_its_bytes(tmp_path):
    path = _jpeg(tmp_path / "a.jpg", Image.effect_noise((61, 47), 60).convert("RGB"))
    with open(path, "rb") as f:
        assert np.array_equal(np.asarray(load_image("upload.jpg", data=f)), np.asarray(load_image(path)))
        assert not f.closed
    with open(tmp_path / "t.jpg", "wb+") as f:
        f.write(b"just text")
        with pytest.raises(DataError, match=r"upload\.jpg: not an image: looks like text"):
            load_image("upload.jpg", data=f)
