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


def test_checker_finds_the_known_duplicates(flowers):
    from imgcls.data.check import check_dataset

    report = check_dataset(flowers, min_side=1)
    rel = lambda group: sorted(p.split("flower_photos/")[1] for p in group)  # noqa: E731
    assert [rel(g) for g in report.duplicates["across_classes"]] == [
        ["roses/15922772266_1167a06620.jpg", "tulips/15922772266_1167a06620.jpg"]]
    assert sorted(rel(g) for g in report.duplicates["within_class"]) == [
        ["sunflowers/14889392928_9742aed45b_m.jpg", "sunflowers/15066430311_fb57fa92b0_m.jpg"],
        ["sunflowers/15069459615_7e0fd61914_n.jpg", "sunflowers/15072973261_73e2912ef2_n.jpg"]]
    assert report.bad_files == [] and sum(report.counts["all"]) == 3670
