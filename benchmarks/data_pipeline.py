"""Images/s of decode + train transform + collate on flower_photos, three pipelines in one run.

(a) baseline: what a user writes by hand — Image.open().convert("RGB"), crop + resize, flip,
    float tensor per image, Normalize per image, default collate;
(b) imgcls default: ImageFolder + train_transform(uint8=True) + make_loader + BatchNormalizer, as
    `imgcls train` runs it;
(c) imgcls with the decoded cache (built once before timing; build time reported separately).
All three use the same DataLoader worker count, batch size and main-process thread count.

    python benchmarks/data_pipeline.py [--root ../shared/data/flower_photos] [--images 3000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from imgcls.data import BatchNormalizer, ImageFolder, make_loader, scan_folder, train_transform
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


def timed(loader, prepare, warm_batches: int) -> float:
    """img/s over one epoch of `loader` after `warm_batches` untimed batches (workers started, prefetch
    queue filled). The epoch is the round's subset, so when it ends no worker has work left that
    would run on into the next pipeline's timing."""
    it = iter(loader)
    for _ in range(warm_batches):
        prepare(next(it)[0])
    seen, start = 0, time.perf_counter()
    for x, _ in it:
        prepare(x)
        seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/flower_photos"))
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed afterwards")
    ap.add_argument("--main-threads", type=int, default=1,
                    help="torch threads of the main process (1: the workers get the cores, as they would "
                         "while the model waits for its next batch; torch's default is one per core)")
    args = ap.parse_args()
    torch.set_num_threads(args.main_threads)
    classes, samples = scan_folder(args.root)
    rng = np.random.default_rng(0)
    samples = [samples[i] for i in rng.permutation(len(samples))]
    torch.manual_seed(0)

    base = HandWritten(samples)
    ours = ImageFolder(args.root, train_transform(uint8=True), samples=samples, classes=classes)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cached = ImageFolder(args.root, train_transform(uint8=True), samples=samples, classes=classes, cache=True,
                             cache_dir=args.cache_dir or tmp)
        build = time.perf_counter() - t0
        bs, workers = args.batch_size, args.workers
        pipelines = [
            ("(a) hand-written baseline", base, lambda ds: DataLoader(ds, batch_size=bs, shuffle=True,
                                                                      num_workers=workers), lambda x: x),
            ("(b) imgcls default", ours, lambda ds: make_loader(ds, batch_size=bs, shuffle=True, workers=workers),
             BatchNormalizer()),
            ("(c) imgcls + decoded cache", cached, lambda ds: make_loader(ds, batch_size=bs, shuffle=True,
                                                                          workers=workers), BatchNormalizer()),
        ]
        # Interleaved rounds (a, b, c, a, b, c, ...) so the machine's drift hits every pipeline alike;
        # each round times one epoch over the same random subset in every pipeline, after a warm-up
        # of as many batches as the loaders prefetch.
        warm = max(1, 4 * workers)
        per_round = (args.images // args.rounds // bs + warm) * bs
        speeds = {name: [] for name, _, _, _ in pipelines}
        for r in range(args.rounds):
            subset = np.random.default_rng(r).choice(len(samples), min(per_round, len(samples)), replace=False)
            for name, ds, loader_of, prepare in pipelines:
                loader = loader_of(Subset(ds, subset.tolist()))
                speeds[name].append(timed(loader, prepare, warm))
                del loader
    print(f"flower_photos, {args.images} images per pipeline in {args.rounds} interleaved rounds, batch "
          f"{args.batch_size}, {args.workers} workers, {args.main_threads} main-process torch thread(s), "
          f"torch {torch.__version__}; cache build (once, {len(samples)} images): {build:.1f} s")
    print("| pipeline | img/s (median) | vs (a) | rounds |\n|---|---:|---:|---|")
    base_speed = statistics.median(speeds["(a) hand-written baseline"])
    for name, runs in speeds.items():
        speed = statistics.median(runs)
        print(f"| {name} | {speed:,.0f} | {speed / base_speed:.2f}x | {', '.join(f'{r:,.0f}' for r in runs)} |")


if __name__ == "__main__":
    main()
