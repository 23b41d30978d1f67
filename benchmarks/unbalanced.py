"""Unbalanced classes on flower_photos: a plain run against each remedy, on the same cut-down train set.

The 9:1 stratified split of flower_photos (seed 0, what `imgcls split --val 0.1 --seed 0` makes) with one
class (--small, default tulips) cut to --keep (10%) of its train images, drawn with --seed; the val part
is unchanged, so every variant is judged on the same 364 photos. The split is written as a split index
(no copies) under --work, and each variant is one `imgcls train` subprocess whose command is printed:

    plain       no remedy
    balanced    --class-weights balanced (inverse frequency)
    effective   --class-weights effective (Cui et al. 2019, beta 0.999)
    sampler     --sampler balanced (classes drawn evenly, with replacement)

Every variant trains a new head on EfficientNet-Lite0's ImageNet features (cached once per run) and picks
best.ckpt by --metric (default balanced_acc, the same for every variant, so no variant is favoured by
what chooses its epoch). The table gives, for the best weights (the run's report.json): the small class's
recall, macro-F1, balanced accuracy and top-1, and the wall time of the whole command.

Usage (from the project root, ../shared beside it):

    python benchmarks/unbalanced.py --work /tmp/unbalanced [--variants plain,sampler] [--epochs 30]
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from imgcls.data.split import make_split, write_split

COMMON = ["--model", "efficientnet_lite0", "--weights", "efficientnet_lite0.in1k", "--transfer", "head",
          "--optimizer", "adamw", "--lr", "1e-3", "--no-progress", "--no-tensorboard"]
VARIANTS = {
    "plain": [],
    "balanced": ["--class-weights", "balanced"],
    "effective": ["--class-weights", "effective"],
    "sampler": ["--sampler", "balanced"],
}


def unbalanced_index(data: Path, dest: Path, *, small: str, keep: float, seed: int) -> tuple[Path, list[int]]:
    """Write the split index (train with class `small` cut to `keep` of its images, val unchanged); return
    it and the train counts per class."""
    split = make_split(data, val=0.1, seed=0)
    if small not in split.classes:
        raise SystemExit(f"--small {small!r}: not a class of {data} ({', '.join(split.classes)})")
    target = split.classes.index(small)
    train = split.parts["train"]
    mine = [i for i, (_, t) in enumerate(train) if t == target]
    rng = np.random.default_rng(seed)
    kept = set(rng.choice(mine, size=max(1, round(keep * len(mine))), replace=False).tolist())
    split.parts["train"] = [s for i, s in enumerate(train) if s[1] != target or i in kept]
    index = write_split(split, dest, mode="index", force=True)
    return index, split.counts()["train"]


def scores(run_dir: Path, small: str) -> dict[str, float]:
    """The best weights' numbers (report.json, written by the run for best.ckpt)."""
    report = json.loads((run_dir / "report.json").read_text())
    recall = {row["class"]: row["recall"] for row in report["per_class"]}
    return {"small_recall": recall[small], "macro_f1": report["macro"]["f1"],
            "balanced_acc": report["macro"]["recall"], "top1": report["top1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/flower_photos")
    ap.add_argument("--work", default="/tmp/imgcls-unbalanced")
    ap.add_argument("--small", default="tulips", help="the class cut down")
    ap.add_argument("--keep", type=float, default=0.1, help="the share of its train images kept")
    ap.add_argument("--seed", type=int, default=0, help="which of its images are kept")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--metric", default="balanced_acc", choices=("top1", "balanced_acc", "macro_f1"))
    ap.add_argument("--extra", default="", help="more train flags for every variant, e.g. '--batch-size 64'")
    args = ap.parse_args()
    work = Path(args.work)
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    index, counts = unbalanced_index(Path(args.data).resolve(), work / "split", small=args.small, keep=args.keep,
                                     seed=args.seed)
    print(f"train counts per class: {counts} ({args.small} kept at {args.keep:.0%}); index {index}", flush=True)
    table = []
    for name in args.variants.split(","):
        flags = [str(index), *COMMON, *VARIANTS[name], "--epochs", str(args.epochs), "--metric", args.metric,
                 *shlex.split(args.extra), "--out-dir", str(runs), "--name", name]
        if (runs / name).exists():
            shutil.rmtree(runs / name)
        print("$ imgcls train " + shlex.join(flags), flush=True)
        tic = time.perf_counter()
        with (work / f"{name}.log").open("w") as log:
            subprocess.run([sys.executable, "-m", "imgcls", "train", *flags], check=True, stdout=log,
                           stderr=subprocess.STDOUT)
        secs = time.perf_counter() - tic
        s = scores(runs / name, args.small)
        table.append((name, s, secs))
        print(f"  {name}: {args.small} recall {s['small_recall']:.2%}, macro-F1 {s['macro_f1']:.2%}, balanced "
              f"{s['balanced_acc']:.2%}, top-1 {s['top1']:.2%}, {secs:.0f} s wall", flush=True)
    print(f"\n| variant | {args.small} recall | macro-F1 | balanced acc | top-1 | wall |\n|---|---|---|---|---|---|")
    for name, s, secs in table:
        flags = " ".join(VARIANTS[name]) or "(none)"
        print(f"| {name} `{flags}` | {s['small_recall']:.2%} | {s['macro_f1']:.2%} | {s['balanced_acc']:.2%} | "
              f"{s['top1']:.2%} | {secs / 60:.1f} min |")


if __name__ == "__main__":
    main()
