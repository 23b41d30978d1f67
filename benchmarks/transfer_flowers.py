"""Real transfer between disjoint classes of flower_photos, every mode in one table.

1. Pretrain a ResNet-18 from scratch on daisy, dandelion and roses only (the train part of the
   seed's 9:1 split, seed 0).
2. Use its best checkpoint as --weights for sunflowers vs tulips, with 20, 50 and all training
   images per class (a seeded subset of the 9:1 train part; the val part is always whole),
   comparing --transfer full, last:layer4,fc, head, head+ and the same network from scratch.

Every run is an `imgcls train` subprocess whose exact command is printed; the table gives the best
val top-1 and the wall time. Usage (from the project root):

    python benchmarks/transfer_flowers.py --data ../shared/data/flower_photos --work /tmp/transfer
"""
from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from imgcls.data.split import Split, make_split, write_split

PRE = ["daisy", "dandelion", "roses"]
TARGET = ["sunflowers", "tulips"]
COMMON = ["--model", "resnet18", "--input-size", "112", "--cache", "--cache-side", "128", "--optimizer", "adamw",
          "--label-smoothing", "0.1", "--scale", "0.25", "1", "--no-progress", "--no-tensorboard"]


def subset(full: Split, classes: list[str], per_class: int | None, seed: int = 0) -> Split:
    """The classes of `full` renumbered 0..k-1; the train part cut to `per_class` images per class."""
    index = {full.classes.index(c): i for i, c in enumerate(classes)}
    out = Split(full.source, classes, full.seed, {})
    for part, samples in full.parts.items():
        kept = [(p, index[t]) for p, t in samples if t in index]
        if part == "train" and per_class is not None:
            rng = np.random.default_rng([seed, per_class])
            cut = []
            for k in range(len(classes)):
                files = [s for s in kept if s[1] == k]
                cut += [files[i] for i in sorted(rng.permutation(len(files))[:per_class])]
            kept = cut
        out.parts[part] = kept
    return out


def run(args: list[str], log: Path) -> float:
    cmd = [sys.executable, "-m", "imgcls", "train", *args]
    print("$ imgcls train " + shlex.join(args), flush=True)
    tic = time.perf_counter()
    with log.open("w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - tic


def best_top1(run_dir: Path) -> float:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return max(float(r["val_top1"]) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/flower_photos")
    ap.add_argument("--work", default="/tmp/imgcls-transfer")
    ap.add_argument("--pre-epochs", type=int, default=10)
    ap.add_argument("--sizes", default="20,50,all")
    ap.add_argument("--modes", default="full;last:layer4,fc;head;head+;scratch", help="';'-separated")
    args = ap.parse_args()
    work = Path(args.work)
    runs = work / "runs"
    full = make_split(args.data, val=0.1, seed=0)

    pre_ckpt = runs / "pretrain3" / "best.ckpt"
    if not pre_ckpt.is_file():
        write_split(subset(full, PRE, None), work / "pre3", mode="index", force=True)
        secs = run([str(work / "pre3"), *COMMON, "--epochs", str(args.pre_epochs), "--lr", "2e-3",
                    "--warmup-epochs", "1", "--out-dir", str(runs), "--name", "pretrain3"], work / "pretrain3.log")
        print(f"pretrain on {PRE}: best val top-1 {best_top1(pre_ckpt.parent):.2%} in {secs / 60:.1f} min", flush=True)

    modes = args.modes.split(";")
    table = []
    for size in args.sizes.split(","):
        n = None if size == "all" else int(size)
        data = work / f"target_{size}"
        write_split(subset(full, TARGET, n), data, mode="index", force=True)
        epochs = {"20": 30, "50": 20}.get(size, 6)
        for mode in modes:
            name = f"t{size}_{mode.replace(':', '-').replace(',', '-').replace('+', 'plus')}"
            flags = [str(data), *COMMON, "--batch-size", "16", "--out-dir", str(runs), "--name", name]
            if mode == "scratch":
                flags += ["--epochs", str(epochs), "--lr", "2e-3", "--warmup-epochs", "1"]
            elif mode in ("head", "head+"):
                flags += ["--weights", str(pre_ckpt), "--transfer", mode, "--epochs", "50", "--lr", "1e-2"]
            else:
                flags += ["--weights", str(pre_ckpt), "--transfer", mode, "--epochs", str(epochs), "--lr", "5e-4"]
            if (runs / name).exists():
                import shutil

                shutil.rmtree(runs / name)
            secs = run(flags, work / f"{name}.log")
            table.append((size, mode, best_top1(runs / name), secs))
            print(f"  {size:>4} per class  {mode:<16} best val top-1 {table[-1][2]:.2%}  {secs:.0f} s", flush=True)

    print("\n| train images per class | mode | best val top-1 | wall time |\n|---|---|---|---|")
    for size, mode, top1, secs in table:
        print(f"| {size} | {mode} | {top1:.1%} | {secs:.0f} s |")


if __name__ == "__main__":
    main()
