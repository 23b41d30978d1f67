"""Real data: ../shared/data/flower_photos (3,670 JPEGs, 5 classes)."""
from collections import Counter

import pytest

from imgcls.data import ImageFolder, eval_transform, scan_folder


@pytest.fixture(scope="module")
def flowers(shared):
    root = shared / "data" / "flower_photos"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    return root


def test_scan_counts(flowers):
    classes, samples = scan_folder(flowers)
    assert classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert Counter(t for _, t in samples) == {0: 633, 1: 898, 2: 641, 3: 699, 4: 799}


def test_eval_batch_with_draft_decoding(flowers):
    ds = ImageFolder(flowers, eval_transform(), min_side=256)
    for i in range(0, len(ds), 400):
        x, y = ds[i]
        assert x.shape == (3, 224, 224) and 0 <= y < 5
        assert -2.2 < float(x.min()) and float(x.max()) < 2.7  # normalised ImageNet range


def test_the_seed_split_of_flowers(flowers):
    from imgcls.data import make_split

    split = make_split(flowers, val=0.1, seed=0)
    counts = split.counts()
    assert sum(counts["train"]) == 3306 and sum(counts["val"]) == 364
    assert counts["val"] == [63, 89, 64, 69, 79]
