"""ImageNet transfer on flower_photos: EfficientNet-Lite from its published weights, every mode in one table.

On the 9:1 stratified split (seed 0: 3,306 train / 364 val) each variant is one `imgcls train`
subprocess whose exact command is printed; the table gives the best val top-1, the epochs and the
wall time of the whole command (start-up, weight loading, feature extraction or decoding, every
validation pass). Variants (`--variants`, comma-separated):

    head0   efficientnet_lite0.in1k, --transfer head (a new classifier on cached centre-crop features)
    last0   efficientnet_lite0.in1k, --transfer last:features.6,features.7,features.8,classifier
    full0   efficientnet_lite0.in1k, --transfer full (everything fine-tunes)
    head1   efficientnet_lite1.in1k, --transfer head (240 px)
    head2   efficientnet_lite2.in1k, --transfer head (260 px)

The preprocessing of every variant comes from its weights (TF-Lite mean/std, the variant's size).
Usage (from the project root, ../shared beside it):

    python benchmarks/pretrained_flowers.py --work /tmp/pretrained [--variants head0,full0]
"""
from __future__ import annotations

import argparse
import csv
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMON = ["--optimizer", "adamw", "--no-progress", "--no-tensorboard"]
HEAD = ["--transfer", "head", "--lr", "1e-3", "--epochs", "30"]
# fine-tuning: the decoded cache (shorter side 256 = the lite0 eval resize 224/0.875, rounded) spares the JPEG
# decode every epoch; a gentle lr with a short warm-up keeps the ImageNet features
TUNE = ["--cache", "--lr", "5e-4", "--warmup-epochs", "0.3", "--label-smoothing", "0.1", "--scale", "0.25", "1"]
VARIANTS = {
    "head0": ("efficientnet_lite0", "efficientnet_lite0.in1k", HEAD),
    "last0": ("efficientnet_lite0", "efficientnet_lite0.in1k",
              ["--transfer", "last:features.6,features.7,features.8,classifier", *TUNE, "--epochs", "4"]),
    "full0": ("efficientnet_lite0", "efficientnet_lite0.in1k", ["--transfer", "full", *TUNE, "--epochs", "5"]),
    "head1": ("efficientnet_lite1", "efficientnet_lite1.in1k", HEAD),
    "head2": ("efficientnet_lite2", "efficientnet_lite2.in1k", HEAD),
}


def best(run_dir: Path) -> tuple[float, int, int]:
    """(best val top-1, its epoch, epochs run) from the run's metrics.csv."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    top = max(rows, key=lambda r: float(r["val_top1"]))
    return float(top["val_top1"]), int(top["epoch"]), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/flower_photos")
    ap.add_argument("--work", default="/tmp/imgcls-pretrained")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=None, help="override every variant's epochs (a quick check)")
    args = ap.parse_args()
    runs = Path(args.work) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    table = []
    for name in args.variants.split(","):
        model, weights, flags = VARIANTS[name]
        flags = [args.data, "--model", model, "--weights", weights, *flags, *COMMON, "--out-dir", str(runs),
                 "--name", name]
        if args.epochs:
            flags += ["--epochs", str(args.epochs)]
        if (runs / name).exists():
            shutil.rmtree(runs / name)
        print("$ imgcls train " + shlex.join(flags), flush=True)
        tic = time.perf_counter()
        with (Path(args.work) / f"{name}.log").open("w") as log:
            subprocess.run([sys.executable, "-m", "imgcls", "train", *flags], check=True, stdout=log,
                           stderr=subprocess.STDOUT)
        secs = time.perf_counter() - tic
        top1, at, epochs = best(runs / name)
        table.append((name, model, flags[flags.index("--transfer") + 1], top1, at, epochs, secs))
        print(f"  {name}: best val top-1 {top1:.2%} at epoch {at}/{epochs}, {secs:.0f} s wall", flush=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS of the largest run: {peak:.0f} MB")
    print("\n| variant | model | --transfer | best val top-1 | at epoch / run | wall |\n|---|---|---|---|---|---|")
    for name, model, transfer, top1, at, epochs, secs in table:
        print(f"| {name} | {model} | `{transfer}` | {top1:.2%} | {at} / {epochs} | {secs / 60:.1f} min |")


if __name__ == "__main__":
    main()
