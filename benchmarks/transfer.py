"""Head-only transfer: cached backbone features against the naive loop, in one run.

The naive loop (`--feature-views 0`) runs the frozen backbone on every augmented batch of every
epoch; imgcls's default runs it once per image (centre crop, `--feature-views 1`) or once per
augmented view (`--feature-views K`) and trains the head on the cached tensors. Same data, same
pretrained weights, same head, same epochs; the table gives wall time, the speed-up and best val
top-1. Usage (from the project root):

    python benchmarks/transfer.py --data DATA --weights CKPT_OR_PTH [--model resnet18] [--epochs 10]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from imgcls.engine import Config, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--views", type=int, default=4, help="K of the augmented-views variant")
    ap.add_argument("--transfer", default="head", choices=("head", "head+"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for label, views in (("naive: backbone every step", 0), ("cached, centre crop", 1),
                             (f"cached, {args.views} augmented views", args.views)):
            cfg = Config()
            cfg.data.data, cfg.data.input_size, cfg.data.batch_size = args.data, args.input_size, 32
            cfg.data.cache, cfg.data.cache_side = True, int(round(args.input_size / 0.875))
            cfg.data.feature_views = views
            cfg.model.model, cfg.model.weights, cfg.model.transfer = args.model, args.weights, args.transfer
            cfg.optim.optimizer, cfg.optim.lr = "adamw", 1e-2
            cfg.train.epochs, cfg.train.out_dir, cfg.train.progress, cfg.train.tensorboard = args.epochs, out, False, False
            tic = time.perf_counter()
            result = train(cfg)
            rows.append((label, time.perf_counter() - tic, result.best_top1))
    base = rows[0][1]
    print(f"\n{'variant':<32} {'wall s':>8} {'speed-up':>9} {'best val top-1':>15}")
    for label, secs, top1 in rows:
        print(f"{label:<32} {secs:8.1f} {base / secs:8.1f}x {top1:15.2%}")


if __name__ == "__main__":
    main()
