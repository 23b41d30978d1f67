"""Images/s of every registered model: inference (eval, no grad) and one SGD training step.

For each model: a batch of random images at --input (LeNet-5: 32, its only size), a warm-up
step, then the median over --steps timed steps of
  - forward: `model.eval()` under `torch.no_grad()`;
  - train:   `model.train()`, forward, cross-entropy (+ 0.3 x each GoogLeNet auxiliary loss),
             backward, `SGD(lr=0.01, momentum=0.9).step()`.
Printed as one table. The whole zoo at batch 32 takes long on a small CPU: pick with --models.

    python benchmarks/zoo.py --models 'resnet*' --batch 32 --steps 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from imgcls.models import create_model, list_models

# models that take one input size only
FIXED_INPUT = {"lenet5": 32}


def _median_seconds(fn, steps: int) -> float:
    fn()  # warm-up: allocations, one-time kernel selection
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, *, batch: int, size: int, steps: int, num_classes: int = 1000) -> tuple[float, float]:
    """(forward img/s, train-step img/s) of one model."""
    size = FIXED_INPUT.get(name, size)
    kwargs = {"image_size": size} if name.startswith("vit") else {}
    model = create_model(name, num_classes=num_classes, **kwargs)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, num_classes, (batch,))
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        out = model(x)
        logits, *aux = out if isinstance(out, tuple) else (out,)
        loss = criterion(logits, y) + sum(0.3 * criterion(a, y) for a in aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.eval()
    fwd = batch / _median_seconds(forward, steps)
    model.train()
    train = batch / _median_seconds(train_step, steps)
    return fwd, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="*", help="shell-style pattern of model names (default: all)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=int, default=224, help="image side (default 224; LeNet-5 always 32)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per measurement, after one warm-up")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = list_models(args.models)
    if not names:
        ap.error(f"no model matches {args.models!r} (see `imgcls models`)")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"input {args.input}, median of {args.steps} steps")
    head = f"{'model':<20} {'input':>5} {'forward img/s':>14} {'train img/s':>12}"
    print(head)
    print("-" * len(head))
    for name in names:
        fwd, train = bench(name, batch=args.batch, size=args.input, steps=args.steps)
        print(f"{name:<20} {FIXED_INPUT.get(name, args.input):>5} {fwd:>14.1f} {train:>12.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
