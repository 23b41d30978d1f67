"""data/augment.py: torchvision's TrivialAugmentWide / RandAugment operations and bins, random erasing."""
import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data.augment import (NUM_BINS, RandAugment, RandomErasing, TrivialAugmentWide, _space, apply_op,
                                 augment_steps)
from imgcls.data.transforms import IMAGENET_MEAN


def _image(h=40, w=40, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_translate_moves_content_and_fills_black():
    img = _image()
    out = np.asarray(apply_op(Image.fromarray(img), "TranslateX", 10.0))
    assert np.array_equal(out[:, 10:], img[:, :-10]) and not out[:, :10].any()
    out = np.asarray(apply_op(Image.fromarray(img), "TranslateY", -5.0))
    assert np.array_equal(out[:-5], img[5:]) and not out[-5:].any()


def test_rotate_90_is_a_quarter_turn_and_shear_0_is_identity():
    img = _image()
    assert np.array_equal(np.asarray(apply_op(Image.fromarray(img), "Rotate", 90.0)), np.rot90(img))
    assert np.array_equal(np.asarray(apply_op(Image.fromarray(img), "ShearX", 0.0)), img)


def test_colour_ops_follow_their_definitions():
    img = _image()
    pil = Image.fromarray(img)
    assert not np.asarray(apply_op(pil, "Brightness", -1.0)).any()  # factor 0: black
    assert np.array_equal(np.asarray(apply_op(pil, "Posterize", 2)), img & 0b11000000)
    assert np.array_equal(np.asarray(apply_op(pil, "Solarize", 128.0)), np.where(img >= 128, 255 - img, img))
    assert np.array_equal(np.asarray(apply_op(pil, "Identity", 0.0)), img)
    with pytest.raises(ValueError, match="unknown augmentation op"):
        apply_op(pil, "Blur", 1.0)


def test_magnitude_bins_are_torchvisions():
    wide, rand = _space(224, 224, wide=True), _space(224, 224, wide=False)
    assert len(wide) == len(rand) == 14 and NUM_BINS == 31
    assert wide["Posterize"][0].tolist()[:1] + wide["Posterize"][0].tolist()[-1:] == [8, 2]
    assert rand["Posterize"][0].tolist()[-1] == 4
    assert float(wide["Rotate"][0][-1]) == 135.0 and float(rand["Rotate"][0][-1]) == 30.0
    assert float(rand["ShearX"][0][9]) == pytest.approx(0.09)  # magnitude 9 of 30 at max 0.3
    assert float(rand["TranslateX"][0][-1]) == pytest.approx(150 / 331 * 224)
    assert float(wide["TranslateX"][0][-1]) == 32.0 and float(wide["Solarize"][0][0]) == 255.0


@pytest.mark.parametrize("policy", [TrivialAugmentWide(), RandAugment(2, 9)], ids=["trivial", "rand"])
def test_policies_are_a_function_of_the_seed_and_vary_across_seeds(policy):
    img = _image(32, 48)
    outs = []
    for seed in range(40):
        torch.manual_seed(seed)
        a = policy(img)
        torch.manual_seed(seed)
        assert np.array_equal(a, policy(img)) and a.shape == img.shape and a.dtype == np.uint8
        outs.append(a.tobytes())
    assert len(set(outs)) > 20  # many different ops/magnitudes, few identity draws


def test_random_erasing_paints_one_box_of_the_mean_colour():
    img = np.full((64, 64, 3), 7, dtype=np.uint8)
    torch.manual_seed(0)
    out = RandomErasing(1.0)(img.copy())
    fill = [round(255 * m) for m in IMAGENET_MEAN]
    erased = np.all(out == fill, axis=2)
    ys, xs = np.nonzero(erased)
    assert erased.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # one filled rectangle
    assert 0.02 * 64 * 64 * 0.5 <= erased.sum() <= 0.33 * 64 * 64 * 1.5
    assert np.all(out[~erased] == 7)
    assert np.array_equal(RandomErasing(0.0)(img), img)


def test_augment_steps():
    steps = augment_steps("randaugment", randaugment_ops=3, randaugment_magnitude=5, random_erasing=0.25)
    assert steps == [RandAugment(3, 5), RandomErasing(0.25)]
    assert augment_steps("none") == [] and augment_steps("trivialaugment") == [TrivialAugmentWide()]
    with pytest.raises(ValueError):
        augment_steps("autoaugment")
