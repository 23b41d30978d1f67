"""Can a model's answers be trusted? Calibration, "unknown", test-time augmentation and the LR finder,
measured on flower_photos (issue 27). Every step is an `imgcls` subprocess whose command is printed.

Parts (`--parts`, comma-separated):

    calibration  a split (--val, --test of the data, seed 0); a head on --weights' cached features; eval on
                 the test part: ECE at T = 1 and at the val-fitted T, accuracy at 90% / 95% coverage, the
                 coverage and accuracy of --abstain precision:0.99 (the threshold fitted on val)
    unknown      the same head trained without one class (--holdout); predict on that class's photos with
                 --abstain precision:0.95 and precision:0.99: the share answered "unknown" (and, for
                 comparison, on the test photos of the classes it knows)
    tta          eval of the calibration part's model on the test part with no TTA, --tta flip and
                 --tta flip,crops: top-1 and wall time of each
    lrfind       for head transfer (adamw) and a from-scratch resnet18 (sgd): lr-find's suggestion, then
                 one run at it and one per rate of a small grid: the best val top-1 of each

Usage (from the project root, ../shared beside it; takes hours for the full set on 2 cores):

    python benchmarks/trust.py --work /tmp/trust [--parts calibration,tta] [--lrfind head] [--quick]

`--quick` is a smoke check on any small class-per-folder set: 1-2 epochs, 20 lr-find steps, 2 grid rates.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

HEAD = ["--weights", "efficientnet_lite0.in1k", "--transfer", "head", "--optimizer", "adamw"]
SCRATCH = ["--model", "resnet18", "--optimizer", "sgd", "--input-size", "128", "--cache"]
COMMON = ["--no-progress", "--no-tensorboard"]


def run(*argv: object) -> tuple[str, float]:
    """`imgcls ARGV` in a subprocess: (stdout, seconds); a failure stops the benchmark with its output."""
    cmd = [sys.executable, "-m", "imgcls", *map(str, argv)]
    print("$", shlex.join(cmd), flush=True)
    tic = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout, time.perf_counter() - tic


def best_top1(run_dir: Path) -> float:
    return max(float(r["val_top1"]) for r in csv.DictReader((run_dir / "metrics.csv").open()))


def train(data: Path, runs: Path, name: str, *flags: object) -> Path:
    """A run folder RUNS/NAME: trained now, or kept from an earlier invocation that finished it."""
    if not (runs / name / "best.ckpt").is_file():
        run("train", data, *flags, *COMMON, "--out-dir", runs, "--name", name)
    return runs / name


def eval_json(ckpt: Path, data: Path, out: Path, *flags: object) -> tuple[dict, float]:
    _, seconds = run("eval", ckpt, data, "--part", "test", "-o", out, *flags)
    return json.loads((out / "report.json").read_text()), seconds


def part_calibration(a, split: Path, runs: Path) -> Path:
    run_dir = train(split, runs, "head", *HEAD, "--lr", "1e-3", "--epochs", a.head_epochs)
    report, _ = eval_json(run_dir / "best.ckpt", split, a.work / "eval-test", "--abstain", "precision:0.99")
    c = report["confidence"]
    print(f"calibration (test part, {report['n']} images): top-1 {report['top1']:.2%}, T {c['temperature']:.3f}, "
          f"ECE {c['ece_before']:.2%} -> {c['ece_after']:.2%}; accuracy at 90% coverage "
          f"{c['accuracy_at_coverage']['0.9']:.2%}, at 95% {c['accuracy_at_coverage']['0.95']:.2%}; "
          f"--abstain precision:0.99: answered {c['abstain']['coverage']:.2%}"
          + (f", accuracy {c['abstain']['accuracy']:.2%} on them" if c["abstain"]["accuracy"] is not None else ""))
    return run_dir


def part_unknown(a, split: Path, runs: Path) -> None:
    """A split folder without the held-out class (symbolic links), a head on it, predict on the held-out photos."""
    known = a.work / "known"
    for part in ("train", "val", "test"):
        for cls in sorted(p for p in (split / part).iterdir() if p.is_dir() and p.name != a.holdout):
            (known / part).mkdir(parents=True, exist_ok=True)
            if not (known / part / cls.name).exists():
                (known / part / cls.name).symlink_to(cls.resolve())
    run_dir = train(known, runs, "head-known", *HEAD, "--lr", "1e-3", "--epochs", a.head_epochs)
    unseen = [split / part / a.holdout for part in ("train", "val", "test")]
    for rule in ("precision:0.95", "precision:0.99"):
        out, _ = run("predict", run_dir / "best.ckpt", *unseen, "--json", "--abstain", rule)
        got = json.loads(out)
        seen_out, _ = run("predict", run_dir / "best.ckpt", *(split / "test" / c.name for c in (known / "test").iterdir()),
                          "--json", "--abstain", rule)  # the class folders themselves: predict does not follow links
        seen = json.loads(seen_out)
        share = sum(g["answer"] == "unknown" for g in got) / len(got)
        seen_share = sum(g["answer"] == "unknown" for g in seen) / len(seen)
        print(f"unknown ({rule}): {share:.2%} of {len(got)} photos of the unseen class {a.holdout!r}; "
              f"{seen_share:.2%} of {len(seen)} test photos of the known classes")


def part_tta(a, split: Path, ckpt: Path) -> None:
    base = None
    for tta in (None, "flip", "flip,crops"):
        flags = ["--tta", tta] if tta else []
        report, seconds = eval_json(ckpt, split, a.work / f"eval-tta-{tta or 'none'}", *flags, "--workers", "0")
        base = base or (report["top1"], seconds)
        print(f"tta {tta or 'none'}: top-1 {report['top1']:.2%} ({100 * (report['top1'] - base[0]):+.2f} points), "
              f"eval {seconds:.1f} s ({seconds / base[1]:.2f}x, start-up included)")


def part_lrfind(a, split: Path, runs: Path) -> None:
    cases = {"head": (HEAD, a.head_epochs, a.head_grid), "scratch": (SCRATCH, a.scratch_epochs, a.scratch_grid)}
    for name in a.lrfind.split(","):
        flags, epochs, grid = cases[name]
        out, seconds = run("lr-find", split, *flags, *COMMON, "--out-dir", runs, "--steps", a.find_steps, "--json",
                           "--plot", a.work / f"lr_find-{name}.png")
        report = json.loads(out)
        found = report["suggestion"]
        if found is None:
            print(f"lr-find {name}: no suggestion ({report['stopped']}) in {seconds:.0f} s")
            continue
        print(f"lr-find {name}: suggestion {found:.3g} in {seconds:.0f} s")
        results = {}
        for lr in [found, *grid]:
            tag = "" if name == "head" or epochs == 30 else f"-e{epochs}"  # runs of other lengths kept apart
            run_dir = train(split, runs, f"{name}{tag}-lr{lr:.3g}", *flags, "--lr", f"{lr:.3g}", "--epochs", epochs)
            results[lr] = best_top1(run_dir)
        best_lr = max(grid, key=results.get)
        print(f"lr-find {name}: {results[found]:.2%} at {found:.3g}; grid best {results[best_lr]:.2%} at {best_lr:g} "
              f"({100 * (results[found] - results[best_lr]):+.2f} points); grid: "
              + ", ".join(f"{lr:g} {results[lr]:.2%}" for lr in grid))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/flower_photos")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgcls-trust"))
    ap.add_argument("--parts", default="calibration,unknown,tta,lrfind")
    ap.add_argument("--holdout", default="roses", help="the class the 'unknown' model never sees")
    ap.add_argument("--lrfind", default="head,scratch", choices=["head", "scratch", "head,scratch"],
                    help="the lrfind part's cases (scratch: five 30-epoch resnet18 runs, hours on 2 cores)")
    ap.add_argument("--scratch-epochs", type=int, default=30,
                    help="epochs of each from-scratch run (30: hours for the five on 2 cores)")
    ap.add_argument("--quick", action="store_true", help="a smoke check: tiny epochs, steps and grids")
    a = ap.parse_args()
    a.head_epochs, a.scratch_epochs, a.find_steps = (1, 1, 20) if a.quick else (15, a.scratch_epochs, 100)
    a.head_grid = [1e-3, 1e-2] if a.quick else [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    a.scratch_grid = [0.1, 0.3] if a.quick else [0.01, 0.03, 0.1, 0.3]
    parts = a.parts.split(",")
    split, runs = a.work / "split", a.work / "runs"
    if not split.exists():
        run("split", a.data, "-o", split, "--val", "0.1", "--test", "0.1", "--seed", "0", "--mode", "link")
    if "calibration" in parts or "tta" in parts:
        head = part_calibration(a, split, runs)
        if "tta" in parts:
            part_tta(a, split, head / "best.ckpt")
    if "unknown" in parts:
        part_unknown(a, split, runs)
    if "lrfind" in parts:
        part_lrfind(a, split, runs)


if __name__ == "__main__":
    main()
