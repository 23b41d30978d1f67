"""Tiny segmentation sets made in tmp_path: photos whose colour says the class of each pixel (PNG, so
exact), palette-PNG masks, classes.json; and the PASCAL VOC layout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (0, 0, 0)]  # classes a, b, c; void 3
NAMES = ["a", "b", "c"]
VOID = 3


def mask_pattern(w: int, h: int, k: int) -> np.ndarray:
    """Class bands that differ per image `k`, with a void block in the top-left corner."""
    x = np.arange(w)[None, :] + 2 * k
    y = np.arange(h)[:, None]
    mask = ((x // 8 + y // 8) % 3).astype(np.uint8)
    mask[:4, :4] = VOID
    return mask


def photo_of(mask: np.ndarray) -> np.ndarray:
    return np.array(PALETTE, dtype=np.uint8)[mask]


def save_mask(mask: np.ndarray, path: Path) -> None:
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    img.putpalette([v for c in PALETTE for v in c])
    img.save(path)


def write_classes(root: Path, **override) -> Path:
    d = {"classes": NAMES, "void": {"index": VOID, "name": "void"}, "palette": [list(c) for c in PALETTE]} | override
    (root / "classes.json").write_text(json.dumps(d))
    return root / "classes.json"


def make_seg_folder(root: Path, *, n_train: int = 4, n_val: int = 2, size: tuple[int, int] = (48, 32),
                    jpeg: bool = False) -> Path:
    """ROOT/{train,val}/{images,masks} + classes.json: `size` (w, h) photos."""
    w, h = size
    for part, n in (("train", n_train), ("val", n_val)):
        (root / part / "images").mkdir(parents=True)
        (root / part / "masks").mkdir(parents=True)
        for i in range(n):
            mask = mask_pattern(w, h, i + (100 if part == "val" else 0))
            ext = "jpg" if jpeg else "png"
            Image.fromarray(photo_of(mask)).save(root / part / "images" / f"{part}{i:02d}.{ext}")
            save_mask(mask, root / part / "masks" / f"{part}{i:02d}.png")
    write_classes(root)
    return root


def make_voc(root: Path, *, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (40, 30)) -> Path:
    """JPEGImages/, SegmentationClass/ (palette PNGs with 255 on a border line), ImageSets/Segmentation/."""
    from imgcls.data.masks import voc_palette

    w, h = size
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    for part, n in (("train", n_train), ("val", n_val)):
        ids = [f"2007_{part}{i}" for i in range(n)]
        for k, i in enumerate(ids):
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[h // 4:, w // 3:] = 15 if k % 2 else 12  # person or horse
            mask[h // 4, w // 3:] = 255  # the object's border
            Image.new("RGB", (w, h), (90, 120, 30 * k)).save(root / "JPEGImages" / f"{i}.jpg")
            img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
            img.putpalette([v for c in voc_palette() for v in c])
            img.save(root / "SegmentationClass" / f"{i}.png")
        (root / "ImageSets/Segmentation" / f"{part}.txt").write_text("\n".join(ids) + "\n")
    return root


# a segmentation model small enough to export in seconds and to write a ~1 MB .onnx: FCN-8s on a quarter-width
# MobileNetV2 (the test fixtures' lraspp_efficientnet_lite0 takes over a minute to export)
TINY_SEG_MODEL = ["--model", "fcn8s", "--model-kw", '{"backbone": "mobilenet_v2", "width_mult": 0.25}']


def train_tiny_seg(root: Path) -> tuple[Path, Path]:
    """(data, best.ckpt): make_seg_folder under `root`, one epoch of TINY_SEG_MODEL at 32 px."""
    from tests.conftest import run_cli

    data = make_seg_folder(root / "data")
    code = run_cli(["train", data, *TINY_SEG_MODEL, "--input-size", 32, "--batch-size", 2, "--epochs", 1,
                    "--workers", 0, "--no-progress", "--no-tensorboard", "--out-dir", root / "runs"])
    assert code == 0
    return data, root / "runs" / "exp1" / "best.ckpt"
