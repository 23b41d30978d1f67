"""Rebuild src/imgcls/assets/flowers_mini from ../shared/data/flower_photos (run from the project root).

Picks PER_CLASS photos per class with a fixed seed (skipping the known duplicate), downsizes
each to a shorter side of SIDE pixels, saves it as JPEG quality 85, and writes the matching
credit lines of the upstream LICENSE.txt (CC-BY 2.0) beside them.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PER_CLASS, SIDE, SEED = 60, 128, 0
SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/flower_photos")
DST = Path("src/imgcls/assets/flowers_mini")
SKIP = {"15922772266_1167a06620.jpg"}  # the photo filed under both roses/ and tulips/


def main() -> None:
    shutil.rmtree(DST, ignore_errors=True)
    credits = {}
    header = []
    for line in (SRC / "LICENSE.txt").read_text().splitlines():
        rel = line.split(" ", 1)[0]
        if "/" in rel and rel.endswith(".jpg"):
            credits[rel] = line
        elif not credits:
            header.append(line)
    keep = []
    for k, cls in enumerate(sorted(p.name for p in SRC.iterdir() if p.is_dir())):
        files = sorted(f for f in (SRC / cls).glob("*.jpg") if f.name not in SKIP)
        rng = np.random.default_rng([SEED, k])
        for f in sorted(files[i] for i in rng.choice(len(files), PER_CLASS, replace=False)):
            img = Image.open(f).convert("RGB")
            w, h = img.size
            s = SIDE / min(w, h)
            img = img.resize((max(SIDE, round(w * s)), max(SIDE, round(h * s))), Image.BICUBIC, reducing_gap=3.0)
            (DST / cls).mkdir(parents=True, exist_ok=True)
            img.save(DST / cls / f.name, quality=85, optimize=True)
            keep.append(credits.get(f"{cls}/{f.name}", f"{cls}/{f.name} (no credit line upstream)"))
    text = "\n".join(header).rstrip() + "\n\nPhotos downsized to a shorter side of %d px for the imgcls demo.\n\n" % SIDE
    (DST / "LICENSE.txt").write_text(text + "\n".join(keep) + "\n")


if __name__ == "__main__":
    main()
