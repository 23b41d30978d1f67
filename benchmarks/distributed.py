"""DDP on one CPU machine: N processes x (cores/N) threads against 1 process x all cores, same global batch.

Both variants train the same model on the same data with the same global batch (so the same steps
and, within float rounding, the same weights); the table gives the last epoch's seconds and
images/s of each, and the speed-up of the processes over the threads. Usage (project root):

    python benchmarks/distributed.py [--data ../shared/data/flower_photos] [--model resnet18]
                                     [--input-size 64] [--batch-size 32] [--epochs 2] [--procs 2]
    python benchmarks/distributed.py --quick        # a few seconds: synthetic images, lenet5, 1 epoch

Each variant is a fresh subprocess (`python -m imgcls train`, and `torchrun` for the processes), so
thread settings cannot leak from one to the other.
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def synthetic(root: Path, classes: int = 3, per_class: int = 40) -> Path:
    """Random 48x48 JPEGs in class folders: enough for a timing of the machinery, not of learning."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / f"c{k}" / f"{i}.jpg")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(label: str, launcher: list[str], train_args: list[str], threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    tic = time.perf_counter()
    proc = subprocess.run([*launcher, "-m", "imgcls", "train", *train_args, "--out-dir", str(out)], env=env,
                          capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    rows = list(csv.DictReader((out / "exp1" / "metrics.csv").open()))
    last = rows[-1]
    return {"label": label, "epoch_s": float(last["epoch_seconds"]), "img_s": float(last["train_img_s"]),
            "val_top1": float(last["val_top1"]), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flower_photos"),
                    help="class-per-folder images (default: ../shared/data/flower_photos)")
    ap.add_argument("--model", default="resnet18", help="model name")
    ap.add_argument("--input-size", type=int, default=64, help="training crop size")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch (split over the processes)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs; the table reports the last one")
    ap.add_argument("--procs", type=int, default=2, help="processes of the DDP variant")
    ap.add_argument("--workers", type=int, default=0, help="data-loading workers per process (0: in the process)")
    ap.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                    help="synthetic images, lenet5 at 32 px, 1 epoch: checks that the script runs")
    args = ap.parse_args()
    if args.batch_size % args.procs:
        sys.exit(f"--batch-size {args.batch_size} must be divisible by --procs {args.procs}")
    n = cores()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic(tmp / "data") if args.quick else Path(args.data)
        if not data.is_dir():
            sys.exit(f"{data}: no such folder; pass --data DIR or --quick")
        model, size, epochs = ("lenet5", 32, 1) if args.quick else (args.model, args.input_size, args.epochs)
        common = [str(data), "--model", model, "--input-size", str(size), "--epochs", str(epochs),
                  "--workers", str(args.workers), "--no-progress", "--no-tensorboard", "--lr", "0.05"]
        per_rank = args.batch_size // args.procs
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
                    str(args.procs), "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
        results = [
            run(f"1 process x {n} threads", [sys.executable], [*common, "--batch-size", str(args.batch_size)], n,
                tmp / "one"),
            run(f"{args.procs} processes x {max(1, n // args.procs)} thread(s)", torchrun,
                [*common, "--batch-size", str(per_rank)], max(1, n // args.procs), tmp / "ddp"),
        ]
    print(f"\n{model} at {size} px on {data.name}, global batch {args.batch_size}, {epochs} epoch(s), {n} cores, "
          f"{args.workers} loader workers per process")
    print(f"{'variant':<30} {'epoch s':>8} {'img/s':>8} {'wall s':>8} {'val top-1':>10}")
    for r in results:
        print(f"{r['label']:<30} {r['epoch_s']:8.1f} {r['img_s']:8.1f} {r['wall_s']:8.1f} {r['val_top1']:10.2%}")
    print(f"speed-up of the processes over the threads (epoch time): {results[0]['epoch_s'] / results[1]['epoch_s']:.2f}x")


if __name__ == "__main__":
    main()
