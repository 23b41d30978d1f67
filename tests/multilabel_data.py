"""A learnable toy multi-label set for the tests: photos of noise with a blob of each of their labels'
colours, listed in a CSV (path,labels,split) with ';' between the labels of a cell."""
from __future__ import annotations

import csv
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230)}


def make_multilabel_csv(root: Path, *, n: int = 24, size: int = 40, seed: int = 0, split: bool = True) -> Path:
    """`n` photos in root/images, root/labels.csv naming each photo's colours (one to three of them); every
    fourth photo is in the val part when `split`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    rows = [["path", "labels", *(["split"] if split else [])]]
    for i in range(n):
        present = [c for c in names if rng.random() < 0.5] or [names[i % len(names)]]
        img = rng.integers(0, 90, (size, size + 8, 3), dtype=np.uint8)
        for k, name in enumerate(names):
            if name in present:
                r = size // 3
                y, x = int(rng.integers(0, size - r)), k * (size // 3)
                img[y:y + r, x:x + r] = COLOURS[name]
        Image.fromarray(img).save(root / "images" / f"p{i:03d}.png")
        rows.append([f"p{i:03d}.png", ";".join(present), *((["val" if i % 4 == 3 else "train"]) if split else [])])
    path = root / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path
