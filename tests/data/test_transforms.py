import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import (IMAGENET_MEAN, IMAGENET_STD, BatchNormalizer, CenterCrop, RandomHorizontalFlip, RandomResizedCrop,
                         Resize, eval_transform, normalize_batch, train_transform)
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


def test_tensor_random_resized_crop_matches_pillow_within_rounding():
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (333, 500, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(arr).resize((250, 166)).resize((500, 333)))  # smooth: filters comparable
    for scale in ((0.08, 0.1), (0.9, 1.0)):  # enlarging and shrinking crops
        torch.manual_seed(0)
        fast = RandomResizedCrop(224, scale)(arr)
        torch.manual_seed(0)
        ref = np.asarray(RandomResizedCrop(224, scale, backend="pil")(Image.fromarray(arr)))
        assert fast.shape == ref.shape == (224, 224, 3) and fast.dtype == np.uint8
        diff = np.abs(fast.astype(int) - ref.astype(int))
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 3


def test_flip_of_arrays_and_read_only_arrays():
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    arr.flags.writeable = False  # as the decoded cache hands them out
    out = RandomHorizontalFlip(p=1.0)(arr)
    assert np.array_equal(out, arr[:, ::-1]) and RandomHorizontalFlip(p=0.0)(arr) is arr


def test_normalize_batch_and_batch_normalizer_reuse_their_buffer():
    batch = torch.randint(0, 256, (5, 6, 7, 3), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = (batch.permute(0, 3, 1, 2).float() / 255 - mean) / std
    norm = BatchNormalizer()
    first = norm(batch)
    assert first.shape == (5, 3, 6, 7) and first.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(first, ref, atol=1e-6) and torch.allclose(normalize_batch(batch), ref, atol=1e-6)
    tail = norm(batch[:2])  # a smaller last batch writes into the same buffer
    assert tail.data_ptr() == first.data_ptr() and torch.allclose(tail, ref[:2], atol=1e-6)
    assert norm(torch.zeros(1, 4, 4, 3, dtype=torch.uint8)).shape == (1, 3, 4, 4)  # new size: new buffer


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_tensor_crop_returns_contiguous_hwc(interpolation):
    arr = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    out = RandomResizedCrop(32, interpolation=interpolation)(arr)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
