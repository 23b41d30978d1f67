"""Test-time augmentation views: torchvision's FiveCrop / TenCrop convention on the eval resize."""
import numpy as np
import pytest
from PIL import Image

from imgcls.data import Preprocessing
from imgcls.data.tta import TTAViews, parse_tta, view_count
from imgcls.errors import ConfigError

PRE = Preprocessing(resize=40, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3, interpolation="nearest")


def coded(h: int = 40, w: int = 60) -> np.ndarray:
    """Each pixel's row and column in its red and green channels."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([ys, xs, np.zeros_like(xs)], -1).astype(np.uint8)


def test_parse_tta():
    assert parse_tta(None) == () and parse_tta("") == ()
    assert parse_tta("crops,flip") == ("flip", "crops") and parse_tta("flip") == ("flip",)
    assert [view_count(parse_tta(t)) for t in ("flip", "crops", "flip,crops")] == [2, 5, 10]
    for bad in ("mirror", "flip,", "flip,scale"):
        with pytest.raises(ConfigError, match=f"--tta '{bad}': use flip, crops or flip,crops"):
            parse_tta(bad)


def test_five_and_ten_crops_are_torchvisions_corners_then_centre():
    img = coded()  # already at the resize (shorter side 40): the views are plain crops of it
    five = TTAViews(PRE, ("crops",))(img)
    assert five.shape == (5, 32, 32, 3) and five.dtype == np.uint8
    c = 32
    want = [img[:c, :c], img[:c, -c:], img[-c:, :c], img[-c:, -c:], img[4:36, 14:46]]
    for got, expected in zip(five, want):
        assert np.array_equal(got, expected)
    ten = TTAViews(PRE, ("flip", "crops"))(img)
    mirrored = img[:, ::-1]
    assert ten.shape == (10, 32, 32, 3) and np.array_equal(ten[:5], five)
    assert np.array_equal(ten[5], mirrored[:c, :c]) and np.array_equal(ten[9], mirrored[4:36, 14:46])


def test_flip_is_the_centre_crop_and_its_mirror_and_small_images_are_padded():
    img = coded()
    flip = TTAViews(PRE, ("flip",))(img)
    centre = np.asarray(PRE.eval_transform()(Image.fromarray(img)))
    assert np.array_equal(flip[0], centre) and np.array_equal(flip[1], centre[:, ::-1])
    small = TTAViews(Preprocessing(resize=20, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3), ("crops",))(coded(20, 20))
    assert small.shape == (5, 32, 32, 3) and small[:, 0, 0].max() == 0  # zero padding, as CenterCrop pads
