"""JPEG draft mode in the eval pipeline: decode speed, the pixels it changes, and accuracy, in one run.

Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale when Resize(shorter side -> R) would
shrink the image at least that much anyway. This compares, on the same JPEGs:
  full:  load_array(path)               + Resize(R) + CenterCrop(C)   (torchvision's pipeline)
  draft: load_array(path, min_side=R)   + Resize(R) + CenterCrop(C)   (imgcls --draft, opt-in)
and reports img/s of both (interleaved rounds, median), the share of images draft mode reduced,
and how the final uint8 crops differ (mean and 99th-percentile absolute difference, PSNR) over the
reduced ones. With --checkpoint, it also evaluates the model on --data both ways and reports
top-1 and how many predictions change.

    python benchmarks/draft_mode.py [--root ../shared/data/flower_photos] [--resize 128 --crop 112]
        [--checkpoint runs/x/best.ckpt --data SPLIT_OR_FOLDER [--part val]]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from imgcls.data import CenterCrop, Resize, load_array, scan_folder


def eval_crop(img: np.ndarray, resize: int, crop: int) -> np.ndarray:
    return np.asarray(CenterCrop(crop)(Resize(resize)(img)))


def crop_of(path: Path, resize: int, crop: int, draft: bool) -> np.ndarray:
    return eval_crop(load_array(path, min_side=resize if draft else None), resize, crop)


def speed(paths: list[Path], resize: int, crop: int, rounds: int) -> dict[str, float]:
    runs: dict[str, list[float]] = {"full": [], "draft": []}
    for _ in range(rounds):
        for name in runs:
            start = time.perf_counter()
            for p in paths:
                crop_of(p, resize, crop, name == "draft")
            runs[name].append(len(paths) / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in runs.items()}


def pixel_effect(paths: list[Path], resize: int, crop: int) -> tuple[int, float, float, float]:
    """(images reduced, mean |diff|, 99th percentile |diff|, PSNR dB) over the reduced images."""
    diffs = []
    for p in paths:
        full, draft = load_array(p), load_array(p, min_side=resize)
        if full.shape == draft.shape:
            continue  # draft did not reduce this one: identical pixels
        a, b = eval_crop(full, resize, crop).astype(np.int16), eval_crop(draft, resize, crop).astype(np.int16)
        diffs.append(np.abs(a - b).ravel())
    if not diffs:
        return 0, 0.0, 0.0, float("inf")
    d = np.concatenate(diffs)
    mse = float((d.astype(np.float64) ** 2).mean())
    return len(diffs), float(d.mean()), float(np.percentile(d, 99)), 10 * np.log10(255**2 / mse) if mse else float("inf")


def accuracy(checkpoint: str, data: str, part: str | None) -> tuple[float, float, float, int]:
    """(top-1 full, top-1 draft, share of changed predictions, images) of a checkpoint on data."""
    from imgcls.data import open_dataset
    from imgcls.inference import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=64, workers=0)
    preds = []
    for min_side in (None, predictor.preprocessing.resize):
        ds = open_dataset(data, part, transform=predictor.transform, min_side=min_side)
        preds.append(predictor.logits_of_dataset(ds).argmax(1))
    targets = torch.tensor(ds.targets)
    full, draft = preds
    return ((full == targets).float().mean().item(), (draft == targets).float().mean().item(),
            (full != draft).float().mean().item(), len(targets))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/flower_photos"))
    ap.add_argument("--resize", type=int, default=128)
    ap.add_argument("--crop", type=int, default=112)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkpoint")
    ap.add_argument("--data")
    ap.add_argument("--part", default="val")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, samples = scan_folder(args.root)
    rng = np.random.default_rng(0)
    paths = [samples[i][0] for i in rng.permutation(len(samples))[:args.images]]

    s = speed(paths, args.resize, args.crop, args.rounds)
    n, mean, p99, psnr = pixel_effect(paths, args.resize, args.crop)
    print(f"{len(paths)} JPEGs from {args.root}, Resize({args.resize}) + CenterCrop({args.crop}), one process, "
          f"{args.rounds} interleaved rounds")
    print("| decode | img/s (median) | vs full |\n|---|---:|---:|")
    print(f"| full | {s['full']:,.0f} | 1.00x |\n| draft | {s['draft']:,.0f} | {s['draft'] / s['full']:.2f}x |")
    print(f"draft reduced {n} of {len(paths)} images ({n / len(paths):.0%}); on those, the final uint8 crop "
          f"differs by {mean:.2f} on average, 99th percentile {p99:.0f}, PSNR {psnr:.1f} dB")
    if args.checkpoint and args.data:
        full, draft, changed, count = accuracy(args.checkpoint, args.data, args.part or None)
        print(f"{args.checkpoint} on {args.data} ({args.part}, {count} images): top-1 full decode {full:.2%}, "
              f"draft {draft:.2%}; {changed:.2%} of predictions differ")


if __name__ == "__main__":
    main()
