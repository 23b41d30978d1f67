import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import CenterCrop, RandomResizedCrop, Resize, eval_transform, train_transform
from imgcls.data.transforms import center_crop_box, resized_size


# torchvision's arithmetic: shorter side -> 256, longer int(256 * long / short); crop offset round-half-even
@pytest.mark.parametrize("size,resized,box", [
    ((500, 333), (384, 256), (80, 16, 304, 240)),
    ((333, 500), (256, 384), (16, 80, 240, 304)),
    ((224, 224), (256, 256), (16, 16, 240, 240)),
    ((1, 1000), (256, 256000), (16, 127888, 240, 128112)),
    ((257, 256), (257, 256), (16, 16, 240, 240)),
])
def test_resize_and_center_crop_arithmetic(size, resized, box):
    assert resized_size(*size, 256) == resized
    assert center_crop_box(*resized, 224, 224) == box


def test_center_crop_rounds_half_to_even():
    # (385 - 224) / 2 = 80.5 -> 80 with Python's round, as torchvision does
    assert center_crop_box(385, 256, 224, 224)[0] == 80
    assert center_crop_box(387, 256, 224, 224)[0] == 82


def test_resize_skips_when_already_right():
    img = Image.new("RGB", (300, 256))
    assert Resize(256)(img) is img


def test_center_crop_pads_small_images_with_zeros():
    img = Image.new("RGB", (10, 300), (255, 255, 255))
    out = np.asarray(CenterCrop(224)(img))
    assert out.shape == (224, 224, 3)
    assert out[:, :107].max() == 0 and out[:, 107:117].min() == 255 and out[:, 117:].max() == 0


def test_eval_pipeline_matches_manual_pillow_and_normalize():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (333, 500, 3), dtype=np.uint8))
    x = eval_transform()(img)
    ref = img.resize((384, 256), Image.BILINEAR).crop((80, 16, 304, 240))
    ref = torch.tensor(np.asarray(ref), dtype=torch.float32).permute(2, 0, 1) / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x, (ref - mean[:, None, None]) / std[:, None, None], atol=1e-6)


def test_random_resized_crop_respects_scale_and_ratio():
    rrc = RandomResizedCrop(224, scale=(0.08, 1.0))
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = rrc.get_params(500, 333)
        assert 0 <= top and top + h <= 333 and 0 <= left and left + w <= 500
        assert 0.08 * 500 * 333 * 0.9 <= h * w <= 500 * 333
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_random_resized_crop_fallback_is_central_with_clamped_ratio():
    rrc = RandomResizedCrop(224, scale=(2.0, 3.0))  # no try can succeed: always the fallback
    assert rrc.get_params(1000, 100) == (0, 433, 100, 133)  # too wide: width = round(100 * 4/3)
    assert rrc.get_params(100, 100) == (0, 0, 100, 100)


def test_train_transform_is_seeded():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    t = train_transform(crop=64)
    torch.manual_seed(5)
    a = torch.stack([t(img) for _ in range(4)])
    torch.manual_seed(5)
    b = torch.stack([t(img) for _ in range(4)])
    assert a.shape == (4, 3, 64, 64) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])
