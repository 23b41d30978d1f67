import json
import logging

import pytest
import torch
from PIL import Image

from imgcls.data import ImageFolder, eval_transform, save_class_indices, scan_folder
from imgcls.errors import DataError


@pytest.fixture
def folder(tmp_path):
    for cls, n, color in [("roses", 3, (200, 0, 0)), ("daisy", 2, (250, 250, 250))]:
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("RGB", (40, 30), color).save(tmp_path / cls / f"{i}.{'JPG' if i == 0 else 'png'}")
    (tmp_path / "roses" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "roses" / "notes.txt").write_text("not an image")
    (tmp_path / ".git").mkdir()
    return tmp_path


def test_scan_sorts_classes_and_ignores_non_images(folder):
    classes, samples = scan_folder(folder)
    assert classes == ["daisy", "roses"]
    assert [(p.relative_to(folder).as_posix(), t) for p, t in samples] == [
        ("daisy/0.JPG", 0), ("daisy/1.png", 0), ("roses/0.JPG", 1), ("roses/1.png", 1), ("roses/2.png", 1)]


def test_items_are_tensors_and_labels(folder):
    ds = ImageFolder(folder, eval_transform(resize=32, crop=24))
    x, y = ds[2]
    assert len(ds) == 5 and x.shape == (3, 24, 24) and y == 1
    assert ds.class_to_idx == {"daisy": 0, "roses": 1}


def test_empty_class_and_missing_folder_are_errors(folder, tmp_path):
    (folder / "tulips").mkdir()
    with pytest.raises(DataError, match=r"tulips: class folder has no images"):
        scan_folder(folder)
    with pytest.raises(DataError, match=r"nope: no such folder"):
        scan_folder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class folders"):
        scan_folder(empty)


def test_bad_file_fails_by_default_and_is_skipped_on_request(folder, caplog):
    (folder / "daisy" / "1.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"1\.png"):
        ImageFolder(folder)[1]
    ds = ImageFolder(folder, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        img, label = ds[1]
    assert label == 1 and "1.png" in caplog.text  # replaced by the next readable sample


def test_class_indices_json(tmp_path):
    save_class_indices(["daisy", "roses"], tmp_path / "class_indices.json")
    assert json.loads((tmp_path / "class_indices.json").read_text()) == {"0": "daisy", "1": "roses"}


def test_dataloader_batches(folder):
    ds = ImageFolder(folder, eval_transform(resize=32, crop=24))
    batches = list(torch.utils.data.DataLoader(ds, batch_size=2))
    assert [len(b[1]) for b in batches] == [2, 2, 1]  # no dropped last batch


def test_scan_keeps_broken_links_for_the_prescan_to_report(folder):
    from imgcls.data import find_bad_images

    (folder / "daisy" / "gone.jpg").symlink_to("nowhere.jpg")
    (folder / "daisy" / "loop.png").symlink_to("loop.png")
    (folder / "daisy" / "up").symlink_to("..", target_is_directory=True)  # a folder loop: not followed
    (folder / "daisy" / "linked.png").symlink_to(folder / "daisy" / "1.png")
    _, samples = scan_folder(folder)
    daisy = [p.name for p, t in samples if t == 0]
    assert daisy == ["0.JPG", "1.png", "gone.jpg", "linked.png", "loop.png"]
    bad = find_bad_images([p for p, _ in samples])
    assert [(p.name, why) for p, why in bad] == [
        ("gone.jpg", "broken symbolic link -> nowhere.jpg; fix or delete the link, or pass --skip-bad"),
        ("loop.png", "symbolic link loop (-> loop.png); fix or delete the link, or pass --skip-bad")]
