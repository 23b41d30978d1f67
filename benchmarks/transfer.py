"""Head-only transfer: `imgcls train --transfer head` against the WZMIAOMIAO course's loop, in one run.

The course's loop (written here as its Test5_resnet/train.py does it: PIL decoding, hand-written
RandomResizedCrop + flip, a DataLoader with a worker per core, eager NCHW) freezes the pretrained
backbone but still runs it on every augmented batch of every epoch, and on the val set after every
epoch. imgcls runs the frozen backbone once per image (the centre crop, `--feature-views 1`) and
trains the head on the cached features; `--feature-backend` says what runs that one pass.

Variants (`--variants`, comma-separated), each one subprocess timed from start to exit:

    course   the course's loop
    naive    imgcls with --feature-views 0: its own loader, the backbone on every batch
    torch    imgcls, cached features computed by PyTorch eager (--feature-backend torch)
    ort      imgcls, cached features computed by ONNX Runtime (--feature-backend onnxruntime; what
             `auto`, the default, picks on a CPU with imgcls[export] installed)

Same model and pretrained weights, same split (imgcls split --val 0.1 --seed 0), same epochs, batch,
optimizer (AdamW, lr 1e-3, weight decay 0.05) and preprocessing (the weights'). Usage (from the
project root, ../shared beside it):

    python benchmarks/transfer.py [--weights efficientnet_lite0.in1k] [--epochs 5] [--variants course,torch,ort]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("course", "naive", "torch", "ort")


def _course(args: argparse.Namespace) -> None:
    """The course's transfer loop; prints {"best_top1": ...} as its last line."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from course import CoursePhotos
    from imgcls.checkpoint import load_source

    source = load_source(args.weights)
    net, pre = source.network, source.preprocessing
    kw = dict(size=pre.crop, resize=pre.resize, mean=pre.mean, std=pre.std)
    split = Path(args.split)
    train_ds, val_ds = CoursePhotos(split / "train", train=True, **kw), CoursePhotos(split / "val", train=False, **kw)
    nw = min(os.cpu_count() or 1, args.batch_size, 8)
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, num_workers=nw)
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, shuffle=False, num_workers=nw)
    torch.manual_seed(0)
    net.reset_classifier(len({label for _, label in train_ds.items}))
    head = net.get_submodule(net.classifier_name)
    for p in net.parameters():
        p.requires_grad = False
    for p in head.parameters():
        p.requires_grad = True
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.05)
    loss_function = nn.CrossEntropyLoss()
    best = 0.0
    for epoch in range(args.epochs):
        net.train()
        for m in net.modules():  # frozen BatchNorm keeps its ImageNet statistics
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_function(net(images), labels)
            loss.backward()
            optimizer.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (net(images).argmax(1) == labels).sum().item()
        best = max(best, correct / len(val_ds))
        print(f"course epoch {epoch + 1}: val top-1 {correct / len(val_ds):.4f}", file=sys.stderr, flush=True)
    print(json.dumps({"best_top1": best}))


def _imgcls_cmd(variant: str, args: argparse.Namespace, runs: Path) -> list[str]:
    cmd = [sys.executable, "-m", "imgcls", "train", args.split, "--model", args.weights.split(".")[0],
           "--weights", args.weights, "--transfer", "head",
           "--optimizer", "adamw", "--lr", str(args.lr), "--epochs", str(args.epochs), "--batch-size",
           str(args.batch_size), "--out-dir", str(runs), "--name", variant, "--no-progress", "--no-tensorboard"]
    if variant == "naive":
        return cmd + ["--feature-views", "0"]
    return cmd + ["--feature-backend", {"torch": "torch", "ort": "onnxruntime"}[variant]]


def _best(run_dir: Path) -> float:
    return max(float(r["val_top1"]) for r in csv.DictReader((run_dir / "metrics.csv").open()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/flower_photos", help="class-per-folder photos")
    ap.add_argument("--work", default="/tmp/imgcls-transfer")
    ap.add_argument("--weights", default="efficientnet_lite0.in1k")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--variants", default="course,torch,ort")
    ap.add_argument("--split", help=argparse.SUPPRESS)
    ap.add_argument("--course", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.course:
        return _course(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    work = Path(args.work)
    runs = work / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"
    args.split = str(work / "split")
    if not (work / "split" / "train").is_dir():
        subprocess.run([sys.executable, "-m", "imgcls", "split", args.data, "-o", args.split, "--val", "0.1",
                        "--seed", "0", "--mode", "link"], check=True)
    rows = []
    for v in variants:
        cmd = ([sys.executable, __file__, "--course", "--split", args.split, "--weights", args.weights, "--epochs",
                str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
               if v == "course" else _imgcls_cmd(v, args, runs))
        print("$", shlex.join(cmd), flush=True)
        tic = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        wall = time.perf_counter() - tic
        top1 = json.loads(done.stdout.strip().splitlines()[-1])["best_top1"] if v == "course" else _best(runs / v)
        rows.append((v, wall, top1))
        print(f"  {v}: {wall:.1f} s, best val top-1 {top1:.2%}", flush=True)
    base = next((wall for v, wall, _ in rows if v == "course"), rows[0][1])
    print(f"\n{args.weights}, {args.epochs} epochs, batch {args.batch_size}")
    print(f"{'variant':<8} {'wall s':>8} {'speed-up':>9} {'best val top-1':>15}")
    for v, wall, top1 in rows:
        print(f"{v:<8} {wall:8.1f} {base / wall:8.1f}x {top1:15.2%}")


if __name__ == "__main__":
    main()
