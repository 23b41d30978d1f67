"""EfficientNet-Lite ImageNet weights on real photos: which eval crop, measured in one run.

TensorFlow's EfficientNet evaluation (tensorflow/tpu, models/official/efficientnet/preprocessing.py,
which the Lite checkpoints were published with) takes the central size/(size + 32) of the shorter
side and resizes it bicubic to size x size. For each weights name this runs the model, on the same
decoded photos, under four preprocessings:

    full      resize the shorter side to size, crop size (crop fraction 1.0: the spec before issue 22)
    pad32     resize to size + 32, crop size, bilinear (TF's window in torchvision's order)
    pad32-bc  resize to size + 32, crop size, bicubic  (TF's window and filter in torchvision's order)
    tf        TF's order: crop the central size/(size + 32) of the original, bicubic to size x size
              (Pillow's bicubic, which antialiases when shrinking; TF 1's resize_bicubic does not)

and prints, per photo set: how many photos are predicted as ImageNet class 985 'daisy' (the one
flower class of flower_photos that ImageNet has), the mean probability of 'daisy', the mean top-1
probability, and the share of top-1 labels equal to the `tf` row's. The photo sets: the daisy folder
of flower_photos (`--daisies` photos per weights name, evenly spread over the sorted folder; 0 = all)
and the 300 bundled 128-px photos of `imgcls demo` (daisy hits counted on their 60 daisies).

The network runs in ONNX Runtime by default (export.OrtFunction, the trainer's backbone backend: about
4x eager PyTorch on a CPU, logits within 1e-6 relative of PyTorch's); `--backend torch` runs it eager.

    python benchmarks/lite_preprocessing.py [--root ../shared/data/flower_photos] [--daisies 0,200,200]
        [--backend onnxruntime|torch]
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgcls.checkpoint import load_source
from imgcls.data import Preprocessing, load_array, normalize_batch, scan_folder
from imgcls.data.transforms import eval_transform
from imgcls.paths import bundled_photos

DAISY = 985
CROP_PADDING = 32
WEIGHTS = ["efficientnet_lite0.in1k", "efficientnet_lite1.in1k", "efficientnet_lite2.in1k"]
# the variants in torchvision's order: resize the shorter side to size + padding, crop size
RESIZE_CROP = {"full": (0, "bilinear"), "pad32": (CROP_PADDING, "bilinear"), "pad32-bc": (CROP_PADDING, "bicubic")}


def tf_center_crop(size: int) -> Callable[[np.ndarray], np.ndarray]:
    """TF's _decode_and_center_crop on a decoded image: the window's side and offsets as TF computes them."""
    def crop(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        side = int(size / (size + CROP_PADDING) * min(h, w))
        top, left = (h - side + 1) // 2, (w - side + 1) // 2
        window = Image.fromarray(img[top:top + side, left:left + side])
        return np.asarray(window.resize((size, size), Image.BICUBIC))
    return crop


def transforms(size: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    steps = {name: eval_transform(resize=size + pad, crop=size, interpolation=interpolation, uint8=True)
             for name, (pad, interpolation) in RESIZE_CROP.items()}
    return {**steps, "tf": tf_center_crop(size)}


@torch.inference_mode()
def probabilities(model: Callable[[torch.Tensor], torch.Tensor], paths: list[Path], steps: dict[str, Callable],
                  mean, std, batch: int = 32) -> dict[str, torch.Tensor]:
    """Softmax outputs [N, 1000] per variant; each photo is decoded once for all variants."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in steps}
    for i in range(0, len(paths), batch):
        images = [load_array(p) for p in paths[i:i + batch]]
        for name, step in steps.items():
            x = normalize_batch(torch.from_numpy(np.stack([step(im) for im in images])), mean, std)
            out[name].append(model(x).softmax(1))
    return {name: torch.cat(p) for name, p in out.items()}


def spread(paths: list[Path], n: int) -> list[Path]:
    return paths if n <= 0 or n >= len(paths) else [paths[i * len(paths) // n] for i in range(n)]


def rows(weights: str, label: str, probs: dict[str, torch.Tensor], daisy: torch.Tensor, registered: str) -> list[str]:
    ref, n = probs["tf"].argmax(1), int(daisy.sum())
    lines = []
    for name, p in probs.items():
        top = p.argmax(1)
        hits = int((top[daisy] == DAISY).sum())
        mark = f"**{name}**" if name == registered else name
        lines.append(f"| {weights} | {label} | {mark} | {hits}/{n} ({hits / n:.1%}) | {p[daisy, DAISY].mean():.3f} "
                     f"| {p.max(1).values.mean():.3f} | {(top == ref).float().mean():.1%} |")
    return lines


def registered_variant(pre: Preprocessing) -> str:
    """Which variant the weights registry holds now (the spec, the one source of the eval transform)."""
    held = [name for name, (pad, interpolation) in RESIZE_CROP.items()
            if (pre.resize, pre.interpolation) == (pre.crop + pad, interpolation)]
    return held[0] if held else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="../shared/data/flower_photos", help="flower_photos (its daisy folder is used)")
    ap.add_argument("--weights", default=",".join(WEIGHTS))
    ap.add_argument("--daisies", default="0,200,200", help="daisy photos per weights name (0 = all), comma-separated")
    ap.add_argument("--backend", choices=["onnxruntime", "torch"], default="onnxruntime")
    args = ap.parse_args()
    daisies = sorted((Path(args.root) / "daisy").glob("*.jpg"))
    classes, samples = scan_folder(bundled_photos())
    bundled = [p for p, _ in samples]
    bundled_daisy = torch.tensor([classes[t] == "daisy" for _, t in samples])
    table = ["| weights | photos | preprocessing | predicted 'daisy' | mean p(daisy) | mean top-1 p | top-1 = tf's |",
             "|---|---|---|---:|---:|---:|---:|"]
    for weights, n in zip(args.weights.split(","), map(int, args.daisies.split(","))):
        tic = time.perf_counter()
        source = load_source(weights)
        model, pre = source.network, source.preprocessing
        size = pre.crop
        if args.backend == "onnxruntime":
            from imgcls.export.graph import OrtFunction

            model = OrtFunction(model, input_size=size)
        steps = transforms(size)
        registered = registered_variant(pre)
        subset = spread(daisies, n)
        probs = probabilities(model, subset, steps, pre.mean, pre.std)
        all_daisy = torch.ones(len(subset), dtype=torch.bool)
        table += rows(weights, f"flower_photos daisy ({len(subset)})", probs, all_daisy, registered)
        probs = probabilities(model, bundled, steps, pre.mean, pre.std)
        label = f"bundled 128 px ({len(bundled)}; daisy: {int(bundled_daisy.sum())})"
        table += rows(weights, label, probs, bundled_daisy, registered)
        print(f"{weights}: size {size}, registered preprocessing {pre}, {args.backend}, "
              f"{time.perf_counter() - tic:.0f} s", flush=True)
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
