"""Images/s of decode + train transform + collate on flower_photos, three pipelines in one run.

(a) baseline: what a user writes by hand — Image.open().convert("RGB"), crop + resize, flip,
    float tensor per image, Normalize per image, default collate;
(b) imgcls default: ImageFolder + train_transform(uint8=True) + make_loader + normalize_batch;
(c) imgcls with the decoded cache (built once before timing; build time reported separately).
All three use the same DataLoader worker count and batch size.

    python benchmarks/data_pipeline.py [--root ../shared/data/flower_photos] [--images 2000]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from imgcls.data import ImageFolder, make_loader, normalize_batch, scan_folder, train_transform
from imgcls.data.loader import default_workers
from imgcls.data.transforms import RandomResizedCrop

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class HandWritten(Dataset):
    def __init__(self, samples):
        self.samples = samples
        self.rrc = RandomResizedCrop(224)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, target = self.samples[i]
        img = Image.open(path).convert("RGB")
        top, left, h, w = self.rrc.get_params(*img.size)
        img = img.crop((left, top, left + w, top + h)).resize((224, 224), Image.BILINEAR)
        if torch.rand(1).item() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.tensor(np.array(img), dtype=torch.float32).permute(2, 0, 1) / 255
        return (x - MEAN) / STD, target


def timed(loader, prepare, n_images: int) -> float:
    it = iter(loader)
    prepare(next(it)[0])  # warm-up: workers started, first batch ready
    seen, start = 0, time.perf_counter()
    while seen < n_images:
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        prepare(x)
        seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/flower_photos"))
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed afterwards")
    args = ap.parse_args()
    classes, samples = scan_folder(args.root)
    rng = np.random.default_rng(0)
    samples = [samples[i] for i in rng.permutation(len(samples))]
    torch.manual_seed(0)

    base = DataLoader(HandWritten(samples), batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                      persistent_workers=args.workers > 0)
    ours = ImageFolder(args.root, train_transform(uint8=True), samples=samples, classes=classes)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cached = ImageFolder(args.root, train_transform(uint8=True), samples=samples, classes=classes, cache=True,
                             cache_dir=args.cache_dir or tmp)
        build = time.perf_counter() - t0
        rows = [("(a) hand-written baseline", timed(base, lambda x: x, args.images)),
                ("(b) imgcls default", timed(make_loader(ours, batch_size=args.batch_size, shuffle=True,
                                                         workers=args.workers), normalize_batch, args.images)),
                ("(c) imgcls + decoded cache", timed(make_loader(cached, batch_size=args.batch_size, shuffle=True,
                                                                 workers=args.workers), normalize_batch, args.images))]
    print(f"flower_photos, {args.images} images per pipeline, batch {args.batch_size}, {args.workers} workers, "
          f"torch {torch.__version__}; cache build (once, {len(samples)} images): {build:.1f} s")
    print(f"| pipeline | img/s | vs (a) |\n|---|---:|---:|")
    for name, speed in rows:
        print(f"| {name} | {speed:,.0f} | {speed / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
