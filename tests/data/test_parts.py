"""One reading of a dataset argument: list_images (the one scan of a folder of photos) and open_parts
(a class-per-folder tree, a split folder, a split.json index, --val-data), and the one unreadable-image
policy of the commands that read labelled data."""
from __future__ import annotations

from PIL import Image

from imgcls.data import list_images


def _photos(root, names):
    for rel in names:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (9, 9, 9)).save(root / rel, format="PNG")
    return root


def test_list_images_is_the_one_scan(tmp_path):
    root = _photos(tmp_path / "p", ["b/2.png", "a/x/1.PNG", "top.Jpeg", "a/.hidden.png", ".thumbs/t.png"])
    (root / "notes.txt").write_text("not an image")
    (root / "gone.jpg").symlink_to("nowhere.jpg")  # broken: kept, so that it is reported, not skipped unsaid
    (root / "a" / "up").symlink_to("..", target_is_directory=True)  # a linked folder: not descended into
    assert [p.relative_to(root).as_posix() for p in list_images(root)] == [
        ".thumbs/t.png", "a/x/1.PNG", "b/2.png", "gone.jpg", "top.Jpeg"]
