"""Segmentation data: the two layouts, masks in every mode, paired transforms that keep photo and mask
aligned, the checks a run makes before it trains, and `imgcls check`'s report."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import SeededItems, open_parts
from imgcls.data.check import check_dataset
from imgcls.data.masks import load_mask, read_class_file, voc_palette
from imgcls.data.seg_transforms import PairedEval, PairedTrain, collate_masks
from imgcls.errors import DataError
from tests.seg_data import NAMES, PALETTE, VOID, make_seg_folder, make_voc, mask_pattern, photo_of, write_classes


def classes_of(root):
    return read_class_file(root / "classes.json")


def class_of_colour(img: np.ndarray) -> np.ndarray:
    """The class each photo pixel's colour stands for (VOID for any other colour)."""
    out = np.full(img.shape[:2], 255, dtype=np.uint8)
    for i, c in enumerate(PALETTE):
        out[(img == np.array(c)).all(-1)] = i
    return out


def test_folder_layout_is_segmentation(tmp_path):
    root = make_seg_folder(tmp_path / "seg")
    parts = open_parts(root, only=("train", "val"))
    assert parts.task == "segmentation" and parts.classes == NAMES
    assert parts.labels.void == VOID and parts.labels.palette[1] == PALETTE[1]
    photo, mask = parts.parts["train"][0]
    assert photo.name == "train00.png" and mask.parent.name == "masks" and mask.stem == photo.stem


def test_voc_layout(tmp_path):
    root = make_voc(tmp_path / "voc")
    parts = open_parts(root, only=("train", "val"))
    assert parts.task == "segmentation" and len(parts.classes) == 21 and parts.labels.void == 255
    assert [p.stem for p, _ in parts.parts["val"]] == ["2007_val0", "2007_val1"]
    mask = load_mask(parts.parts["train"][1][1], parts.labels)
    assert set(np.unique(mask)) == {0, 15, 255}
    assert voc_palette()[15] == (192, 128, 128)  # person


def test_masks_in_every_mode(tmp_path):
    root = write_classes(tmp_path).parent
    classes = classes_of(root)
    mask = mask_pattern(24, 16, 0)
    Image.fromarray(mask).save(tmp_path / "grey.png")
    Image.fromarray(photo_of(mask)).save(tmp_path / "rgb.png")
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "deep.png")
    for name in ("grey.png", "rgb.png", "deep.png"):
        np.testing.assert_array_equal(load_mask(tmp_path / name, classes), mask)
    colours = photo_of(mask)
    colours[5, 7] = (1, 2, 3)
    Image.fromarray(colours).save(tmp_path / "odd.png")
    with pytest.raises(DataError, match=r"odd.png: an RGB mask with colour \(1, 2, 3\) at x=7 y=5"):
        load_mask(tmp_path / "odd.png", classes)


@pytest.mark.parametrize("content, match", [
    ('{"classes": ["a"]}', "at least 2 class names"),
    ('{"classes": ["a", "b"], "void": 1}', "void"),
    ('{"classes": ["a", "b"], "palette": [[1, 2]]}', "palette"),
    ("not json", "not valid JSON")])
def test_bad_class_file(tmp_path, content, match):
    (tmp_path / "classes.json").write_text(content)
    with pytest.raises(DataError, match=match):
        read_class_file(tmp_path / "classes.json")


def test_paired_train_keeps_photo_and_mask_aligned():
    mask = mask_pattern(64, 48, 1)
    img = photo_of(mask)
    torch.manual_seed(3)
    for _ in range(6):  # no rescale: every photo pixel's colour is exactly its mask value
        out_img, out_mask = PairedTrain(48, 40, scale=(1.0, 1.0), void=VOID)(img, mask)
        assert out_img.shape == (40, 40, 3) and out_mask.shape == (40, 40)
        np.testing.assert_array_equal(class_of_colour(out_img), out_mask)
    for _ in range(6):  # rescaled by 0.5..2 (the photo by nearest here, so its colours stay exact)
        out_img, out_mask = PairedTrain(48, 40, void=VOID, interpolation="nearest")(img, mask)
        exact = class_of_colour(out_img)
        labelled = out_mask != VOID
        np.testing.assert_array_equal(exact[labelled], out_mask[labelled])
        assert (out_mask[exact == 255] == VOID).all()  # the padding
    blended, out_mask = PairedTrain(48, 40, void=VOID)(img, mask)  # bilinear: only the photo blends
    assert set(np.unique(out_mask)) <= {0, 1, 2, VOID}


def test_paired_train_pads_with_void_and_mean_colour():
    mask = np.zeros((10, 12), dtype=np.uint8)
    img = photo_of(mask)
    torch.manual_seed(0)
    out_img, out_mask = PairedTrain(10, 32, scale=(1.0, 1.0), hflip=0.0, void=VOID)(img, mask)
    assert (out_mask == VOID).sum() == 32 * 32 - 10 * 12
    assert tuple(out_img[out_mask == VOID][0]) == (124, 116, 104)  # ImageNet's mean colour


def test_paired_eval_resizes_both():
    mask = mask_pattern(48, 32, 0)
    img, out = PairedEval(16)(photo_of(mask), mask)
    assert img.shape == (16, 24, 3) and out.shape == (16, 24)
    assert set(np.unique(out)) <= set(np.unique(mask))
    same, kept = PairedEval(None)(photo_of(mask), mask)
    np.testing.assert_array_equal(kept, mask)


def test_augmentation_is_a_function_of_the_sample_seed(tmp_path):
    root = make_seg_folder(tmp_path / "seg")
    parts = open_parts(root, only=("train",))
    ds = SeededItems(parts.dataset("train", PairedTrain(32, 24, void=VOID)))
    a, b = ds[(1, 1234)], ds[(1, 1234)]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = ds[(1, 99)]
    assert not np.array_equal(a[1], c[1]) or not np.array_equal(a[0], c[0])


def test_collate_pads_other_sizes_with_void():
    small = (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8))
    big = (np.ones((6, 7, 3), np.uint8), np.ones((6, 7), np.uint8))
    images, masks = collate_masks([small, big], void=VOID)
    assert images.shape == (2, 6, 7, 3) and masks.dtype == torch.long
    assert (masks[0, 4:] == VOID).all() and (masks[0, :, 5:] == VOID).all() and masks[0, :4, :5].eq(0).all()


def test_readable_counts_pixels_and_refuses_unusable_masks(tmp_path):
    root = make_seg_folder(tmp_path / "seg")
    parts, _ = open_parts(root, only=("train", "val")).readable("train", "val", skip_bad=False)
    counts = parts.pixel_counts["train"]
    assert counts.sum() == 4 * 48 * 32 and counts[VOID] == 4 * 16
    (root / "train/masks/train01.png").unlink()
    mask = mask_pattern(48, 32, 0)
    mask[0, 20] = 7
    Image.fromarray(mask).save(root / "train/masks/train02.png")
    Image.fromarray(mask_pattern(20, 20, 0)).save(root / "train/masks/train03.png")
    with pytest.raises(DataError) as e:
        open_parts(root, only=("train", "val")).readable("train", "val", skip_bad=False)
    line = str(e.value)
    assert "\n" not in line and "train01.png (no mask)" in line
    assert "values 7 are neither a class (0..2) nor void (3)" in line and "20x20 px" in line
    kept, skipped = open_parts(root, only=("train", "val")).readable("train", skip_bad=True)
    assert [p.name for p in skipped] == ["train01.png", "train02.png", "train03.png"]
    assert [p.name for p, _ in kept.parts["train"]] == ["train00.png"]


def test_check_reports_every_problem_and_the_pixel_shares(tmp_path):
    root = make_seg_folder(tmp_path / "seg")
    clean = check_dataset(root)
    assert clean.clean and abs(sum(clean.shares["train"]) + clean.void_share["train"] - 1) < 1e-9
    assert "pixel shares" in clean.to_text()
    (root / "val/images/val01.png").unlink()
    (root / "train/masks/train00.png").unlink()
    Image.fromarray(mask_pattern(20, 20, 0)).save(root / "train/masks/train03.png")
    (root / "train/images/train02.png").write_bytes(b"")
    report = check_dataset(root)
    assert not report.clean
    text = report.to_text()
    assert "photo without a mask: 1" in text and "train00.png" in text
    assert "mask without a photo: 1" in text and "val01.png" in text
    assert "unusable mask: 1" in text and "train03.png: 20x20 px" in text
    assert "unreadable photo: 1" in text and "train02.png: " in text


def test_class_file_is_required_for_the_folder_layout(tmp_path):
    root = make_seg_folder(tmp_path / "seg")
    (root / "classes.json").unlink()
    with pytest.raises(DataError, match="without classes.json"):
        open_parts(root)


def test_eval_batches_keep_the_resized_photo_apart_from_its_full_size_mask():
    """PairedEval(keep_mask=True) gives a photo at the resize and its mask at the photo's own size: the
    batch must hold the photo as it is, not pasted into a mask-sized black canvas."""
    photo, mask = np.full((64, 96, 3), 7, np.uint8), np.ones((128, 192), np.uint8)
    images, masks = collate_masks([PairedEval(64, keep_mask=True)(np.full((128, 192, 3), 7, np.uint8), mask)])
    assert images.shape == (1, 64, 96, 3) and masks.shape == (1, 128, 192)
    assert torch.equal(images[0], torch.from_numpy(photo)) and bool((masks == 1).all())
