"""Training-step speed on the CPU: a plain eager NCHW loop against imgcls's step, each lever alone
and all together; then one epoch end to end, `imgcls train` against the WZMIAOMIAO course's loop.

Step table (per model, at 112 and 224 px, batch 32; images/s, median over interleaved rounds):
    plain       what a user writes: NCHW model and float batch, torch's default threads, glibc's
                default malloc, SGD + CrossEntropyLoss, zero_grad/backward/step
    +cl         channels_last model and input (imgcls's BatchNormalizer from a uint8 NHWC batch)
    +malloc     imgcls.runtime.keep_freed_memory() (what `imgcls train` sets in its process)
    +fold       BatchNorm frozen and folded into its convolution (models.frozen_bn; `--bn-fold all`)
    +compile    torch.compile (its compile time is reported apart, in the `compile s` column)
    imgcls      every lever imgcls uses by default from scratch: the model's channels_last preference
                + malloc
    imgcls+fold what `imgcls train` uses by default for a full fine-tune of pretrained weights on a CPU
                (`--bn-fold auto` resolves to all); levers combine: imgcls+fold+compile, +cl+fold, ...
    imgcls+fed  `imgcls` with its batches from imgcls's loader on real photos (decode, crop, flip in
                train_workers(cpu) worker processes) instead of a ready batch: does the loader keep up?
    fed:N       the same with N workers = one per core (default_workers), to see oversubscription
Every (model, size, variant) runs in a fresh process (malloc settings cannot be undone), rounds
interleave the variants, and medians are reported. The last line is the headline for resnet18 at
224: `imgcls vs plain loop: X.XXx` (imgcls+fed when the photos are there, else imgcls).

End to end (--e2e, on by default when the photos exist): one epoch of `imgcls train` (its
train_img_s and the command's wall time) against the course's training loop written here (PIL,
hand-written RandomResizedCrop/flip/ToTensor/Normalize, DataLoader with min(cores, batch, 8)
workers, NCHW eager, Adam 1e-4 as in the course), same model, images, batch and size.

    python benchmarks/train_step.py                        # the full table and end to end (slow)
    python benchmarks/train_step.py --quick                # a smoke run of every code path
    python benchmarks/train_step.py --models resnet18 --sizes 224 --rounds 5
    python benchmarks/train_step.py --models lraspp_efficientnet_lite0,efficientnet_lite0 --sizes 352 --batch 8 \
        --variants plain,+cl,+fold,imgcls,imgcls+fold --no-e2e   # a segmentation row: 11 classes, a mask target
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"
STEP_VARIANTS = ("plain", "+cl", "+malloc", "+fold", "+compile", "imgcls", "imgcls+fold", "imgcls+fed", "fed:N")


# -- one measurement, in its own process -------------------------------------------------------

def parse_variant(variant: str) -> tuple[str, set[str]]:
    """'imgcls+fold+compile' -> ('imgcls', {'fold', 'compile'}); a leading '+' is the plain loop's lever."""
    base, *mods = variant.split("+")
    if base.startswith("fed:"):
        return "fed", set(mods)
    return base or "plain", set(mods)


def _child(args: argparse.Namespace) -> None:
    """Time `args.steps` training steps of one variant after 2 warm-up steps; print JSON."""
    base, mods = parse_variant(args.variant)
    imgcls_path = base in ("imgcls", "fed")
    if imgcls_path or "malloc" in mods:
        from imgcls.runtime import keep_freed_memory

        keep_freed_memory()
    import torch
    from torch import nn

    from imgcls.data import BatchNormalizer
    from imgcls.models import create_model, list_models
    from imgcls.models.frozen_bn import fold_batchnorm

    torch.manual_seed(0)
    seg = args.model in list_models(task="segmentation")  # CamVid's 11 classes, a class per pixel
    classes = 11 if seg else 5
    model = create_model(args.model, num_classes=classes)
    cl = bool(getattr(model, "channels_last", True)) if imgcls_path else "cl" in mods
    if "fold" in mods and not fold_batchnorm(model):
        raise SystemExit(f"{args.model}: no BatchNorm could be folded")
    if cl:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    net = torch.compile(model) if "compile" in mods else model
    b, s = args.batch, args.size
    y = torch.randint(0, classes, (b, s, s) if seg else (b,))
    if seg and ("fed" in mods or base == "fed"):
        raise SystemExit("the fed variants read class folders, not masks")
    if "fed" in mods or base == "fed":
        batches = _fed_batches(args, workers="cores" if base == "fed" else None)
    elif not cl:
        x = torch.randn(b, 3, s, s)
        batches = ((x, y) for _ in iter(int, 1))
    else:  # the imgcls path: a uint8 NHWC batch normalised into one kept channels_last buffer
        u8 = torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8)
        norm = BatchNormalizer()
        batches = ((norm(u8), y) for _ in iter(int, 1))

    def step(x, t):
        optimizer.zero_grad(set_to_none=True)
        out = net(x)
        loss = criterion(out["out"] if isinstance(out, dict) else out, t)  # seg: the main head
        loss.backward()
        optimizer.step()
        return float(loss)

    it = iter(batches)
    tic = time.perf_counter()
    step(*next(it))
    first = time.perf_counter() - tic
    step(*next(it))
    if args.profile_child:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step(*next(it))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=48))
        return
    times = []
    for _ in range(args.steps):
        tic = time.perf_counter()
        step(*next(it))  # a fed variant's wait for its batch counts: that is the point
        times.append(time.perf_counter() - tic)
    print(json.dumps({"img_s": b / statistics.median(times), "first_step_s": first, "macs": forward_macs(model, s)}))


def _limit_child(args: argparse.Namespace) -> None:
    """The machine's dense-convolution rate for training: a 3x3, 256-channel convolution at 28x28, batch 32,
    channels_last, forward and backward (input and weight gradients), in GFLOP/s (2 FLOPs per
    multiply-add, backward counted as twice the forward). Each model row is read as a share of it."""
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(32, 256, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_()
    macs = 32 * 28 * 28 * 256 * 256 * 9

    def step() -> None:
        x.grad = conv.weight.grad = None
        conv(x).sum().backward()

    step()
    times = []
    for _ in range(max(3, args.steps)):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    print(json.dumps({"gflops": 3 * 2 * macs / statistics.median(times) / 1e9}))


def forward_macs(model, size: int) -> int:
    """Multiply-adds of one image's forward pass (torch's FlopCounterMode / 2). The training step is
    counted as 3x this: FlopCounterMode over-counts the backward of grouped (depthwise) convolutions."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    model.train(was)
    return counter.get_total_flops() // 2  # a segmentation model's aux head included where it has one


def _fed_batches(args: argparse.Namespace, *, workers: str | None):
    """Endless batches from imgcls's training loader on the photos, normalised as `imgcls train` does."""
    from imgcls.data import BatchNormalizer, ImageFolder, SeededItems, SeededSampler, make_loader, train_transform
    from imgcls.data.loader import default_workers, train_workers

    ds = ImageFolder(args.data, train_transform(crop=args.size, uint8=True))
    n = min(len(ds), args.batch * (args.steps + 4))
    ds.samples = ds.samples[:: max(1, len(ds.samples) // n)][:n]
    sampler = SeededSampler(len(ds), seed=0)
    w = train_workers("cpu") if workers is None else default_workers()
    loader = make_loader(SeededItems(ds), batch_size=args.batch, sampler=sampler, workers=w, drop_last=True)
    norm = BatchNormalizer()
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for images, targets in loader:
            yield norm(images), targets
        epoch += 1


def _run_child(model: str, size: int, variant: str, args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--size", str(size), "--variant", variant,
           "--batch", str(args.batch), "--steps", str(args.steps), "--data", str(args.data)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {model} {size} {variant}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- end to end: one epoch, imgcls train vs the course's loop ---------------------------------

def _subset(data: Path, images: int, out: Path) -> Path:
    """A split folder (train/, val/) of symbolic links: `images` train photos spread over the classes
    and 5 val photos per class."""
    classes = sorted(p for p in data.iterdir() if p.is_dir())
    per = max(1, images // len(classes))
    for c in classes:
        files = sorted(p for p in c.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for part, chosen in (("train", files[:per]), ("val", files[per:per + 5])):
            (out / part / c.name).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                (out / part / c.name / f.name).symlink_to(f.resolve())
    return out


def _course_child(args: argparse.Namespace) -> None:
    """The WZMIAOMIAO course's training epoch (Test5_resnet/train.py), PIL and hand-written transforms."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from course import CoursePhotos
    from imgcls.models import create_model

    ds = CoursePhotos(Path(args.data) / "train", train=True, size=args.size)
    nw = min(os.cpu_count() or 1, args.batch if args.batch > 1 else 0, 8)
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=nw)
    torch.manual_seed(0)
    net = create_model(args.model, num_classes=5)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.0001)
    loss_function = nn.CrossEntropyLoss()
    net.train()
    tic, seen = time.perf_counter(), 0
    for images, labels in loader:
        optimizer.zero_grad()
        loss = loss_function(net(images), labels)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    print(json.dumps({"img_s": seen / (time.perf_counter() - tic)}))


def _imgcls_epoch(subset: Path, args: argparse.Namespace, out: Path) -> dict:
    import csv

    cmd = [sys.executable, "-m", "imgcls", "train", str(subset), "--model", args.model_e2e, "--epochs", "1",
           "--batch-size", str(args.batch), "--input-size", str(args.size_e2e), "--no-progress", "--no-tensorboard",
           "--out-dir", str(out)]
    tic = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"imgcls train failed: {done.stderr.strip()[-500:]}")
    run = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    row = next(csv.DictReader((run / "metrics.csv").open()))
    return {"img_s": float(row["train_img_s"]), "wall_s": wall}


def end_to_end(args: argparse.Namespace) -> tuple[float, float] | None:
    if not args.data.is_dir():
        print(f"end to end: skipped, no photos at {args.data}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        subset = _subset(args.data, args.e2e_images, Path(tmp) / "subset")
        n = sum(1 for _ in (subset / "train").rglob("*.*"))
        ours, course = [], []
        for r in range(args.rounds):
            runs = Path(tmp) / f"runs{r}"
            ours.append(_imgcls_epoch(subset, args, runs))
            cmd = [sys.executable, __file__, "--course", "--model", args.model_e2e, "--size", str(args.size_e2e),
                   "--batch", str(args.batch), "--data", str(subset)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            course.append(json.loads(done.stdout.strip().splitlines()[-1])["img_s"])
            shutil.rmtree(runs, ignore_errors=True)
    a = statistics.median(o["img_s"] for o in ours)
    wall = statistics.median(o["wall_s"] for o in ours)
    c = statistics.median(course)
    print(f"\nend to end, one epoch of {n} photos, {args.model_e2e} at {args.size_e2e} px, batch {args.batch}, "
          f"median of {args.rounds} round(s):")
    print(f"  imgcls train : {a:6.1f} img/s in the epoch ({wall:.0f} s wall for the whole command: start, scan, "
          f"epoch, validation, report)")
    print(f"  course loop  : {c:6.1f} img/s")
    print(f"imgcls train vs course loop: {a / c:.2f}x")
    return a, c


# -- the table ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenet_v2,efficientnet_lite0",
                   help="comma-separated registered models")
    p.add_argument("--sizes", default="160,224", help="comma-separated input sizes")
    p.add_argument("--batch", type=int, default=32, help="images per step")
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement (after 2 warm-up steps)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--variants", default=",".join(STEP_VARIANTS), help="comma-separated subset of " + ", ".join(STEP_VARIANTS))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="flower_photos (fed variants and end to end)")
    p.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=True, help="also the end-to-end epoch")
    p.add_argument("--e2e-images", type=int, default=320, help="train photos of the end-to-end epoch")
    p.add_argument("--model-e2e", default="resnet18", help="model of the end-to-end epoch")
    p.add_argument("--size-e2e", type=int, default=224, help="input size of the end-to-end epoch")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: resnet18 at 64 and 224 px, batch 8, 2 steps, 1 round, no compile, 40 photos")
    p.add_argument("--profile", metavar="MODEL[:SIZE]", help="also profile that model's step: the top operators by "
                   "self CPU time, forward and backward (torch.profiler)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--limit", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--course", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child or args.profile_child:
        return _child(args)
    if args.limit:
        return _limit_child(args)
    if args.course:
        return _course_child(args)
    if args.quick:
        args.models, args.sizes, args.batch, args.steps, args.rounds = "resnet18", "64,224", 8, 2, 1
        args.variants = ",".join(v for v in STEP_VARIANTS if "compile" not in v)
        args.e2e_images = 40
    models, sizes = args.models.split(","), [int(s) for s in args.sizes.split(",")]
    variants = [v for v in args.variants.split(",") if args.data.is_dir() or "fed" not in v]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} core(s), torch threads default, batch {args.batch}, {args.steps} timed steps, {args.rounds} "
          f"round(s); variants: {', '.join(variants)}; CPU flags: {cpu_flags()}")
    results: dict[tuple[str, int, str], list[dict]] = {}
    limits: list[float] = []
    for r in range(args.rounds):
        limits.append(_run(["--limit"], args)["gflops"])  # the limit interleaves with the rows it scales
        for model in models:
            for size in sizes:
                for variant in variants:
                    out = _run_child(model, size, variant, args)
                    if out is not None:
                        results.setdefault((model, size, variant), []).append(out)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    limit = statistics.median(limits)
    best = next((v for v in ("imgcls+fold", "imgcls") if v in variants), variants[-1])
    head = f"{'model':<20}{'px':>5}" + "".join(f"{v:>15}" for v in variants) + f"{'compile s':>11}"
    print("\nimages/s (speed-up against plain)\n" + head)
    for model in models:
        for size in sizes:
            base = _median(results, model, size, "plain")
            cells = []
            for v in variants:
                m = _median(results, model, size, v)
                ratio = f" {m / base:.2f}x" if m is not None and base else ""
                cells.append(f"{'-' if m is None else f'{m:.1f}{ratio}':>15}")
            comp = next((results[(model, size, v)] for v in variants if "compile" in parse_variant(v)[1]
                         and (model, size, v) in results), None)
            comp_s = f"{statistics.median(o['first_step_s'] for o in comp):11.0f}" if comp else f"{'-':>11}"
            print(f"{model:<20}{size:>5}" + "".join(cells) + comp_s)
    print(f"\ntraining arithmetic rate of the {best!r} step (3 x 2 x forward MACs x img/s) against the limit: a 3x3, "
          f"256-channel convolution at 28x28, batch 32, channels_last, forward + backward: {limit:.0f} GFLOP/s "
          f"(median of {len(limits)})")
    print(f"{'model':<20}{'px':>5}{'MACs':>9}{'img/s':>8}{'GFLOP/s':>9}{'share':>7}")
    for model in models:
        for size in sizes:
            runs = results.get((model, size, best))
            if not runs:
                continue
            macs, img_s = runs[0]["macs"], _median(results, model, size, best)
            rate = 3 * 2 * macs * img_s / 1e9
            print(f"{model:<20}{size:>5}{macs / 1e9:8.2f}G{img_s:8.1f}{rate:9.1f}{rate / limit:7.0%}")
    e2e = end_to_end(args) if args.e2e else None
    if args.profile:
        model, _, size = args.profile.partition(":")
        print(f"\nprofile of the {best!r} step, {model} at {size or 224} px, batch {args.batch}:")
        print(_run(["--profile-child", "--model", model, "--size", size or "224", "--variant", best], args,
                   json_out=False))
    headline = "imgcls+fed" if "imgcls+fed" in variants else "imgcls"
    key = ("resnet18", 224)
    plain, ours = _median(results, *key, "plain"), _median(results, *key, headline)
    if plain and ours:
        print(f"(headline: {headline} against plain, resnet18 at 224, batch {args.batch}"
              + (f"; end to end {e2e[0] / e2e[1]:.2f}x" if e2e else "") + ")")
        print(f"imgcls vs plain loop: {ours / plain:.2f}x")
    for size in (224, *sizes):
        plain, ours = _median(results, "efficientnet_lite0", size, "plain"), _median(results, "efficientnet_lite0", size, best)
        if plain and ours:
            print(f"efficientnet_lite0 train step vs plain loop: {ours / plain:.2f}x (at {size} px)")
            break


def cpu_flags() -> str:
    """The vector extensions every speed depends on (AVX2 / AVX-512 / VNNI), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return f"{model}: " + (" ".join(f for f in wanted if f in flags) or "no AVX2")


def _run(extra: list[str], args: argparse.Namespace, *, json_out: bool = True):
    cmd = [sys.executable, __file__, *extra, "--batch", str(args.batch), "--steps", str(args.steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if json_out else done.stdout


def _median(results: dict, model: str, size: int, variant: str) -> float | None:
    runs = results.get((model, size, variant))
    return statistics.median(o["img_s"] for o in runs) if runs else None


if __name__ == "__main__":
    main()
