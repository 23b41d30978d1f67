"""Inference speed: PyTorch eager (fp32 NCHW, what a user writes; channels_last) vs ONNX Runtime fp32 and
static int8 (`imgcls export --int8`), in one process, interleaved rounds, medians, ratios to eager;
the int8 top-1 agreement with fp32 for a trained checkpoint on its val set; and the end-to-end
`imgcls predict` throughput on a folder of photos per backend (decoding included).

    python benchmarks/inference.py                       # resnet18, resnet34, mobilenet_v2, efficientnet_lite0
    python benchmarks/inference.py --checkpoint runs/flowers/best.ckpt --data flowers   # + agreement, e2e on it
    python benchmarks/inference.py --quick               # a smoke run: resnet18 at 64 px, a few photos

Models without --checkpoint are randomly initialised (speed does not depend on the weights) and
calibrated on the bundled flower photos. A trained flower checkpoint in a few minutes, offline:
    imgcls split ../shared/data/flower_photos -o flowers --val 0.1 --seed 0
    imgcls train flowers --model efficientnet_lite0 --weights efficientnet_lite0.in1k --transfer head --epochs 10
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from imgcls.checkpoint import save_checkpoint
from imgcls.compare.measure import time_calls  # interleaved rounds, medians: the one timer compare uses too
from imgcls.export import OrtRunner, export_onnx
from imgcls.export.images import image_files
from imgcls.paths import bundled_photos
from imgcls.models import create_model
from imgcls.weights import imagenet_preprocessing

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flower_photos"


def random_checkpoint(name: str, size: int, folder: Path) -> Path:
    """A checkpoint of a randomly initialised 1000-class `name` at `size` px."""
    model = create_model(name, num_classes=1000).eval()
    pre = imagenet_preprocessing(resize=round(size * 256 / 224), crop=size)
    arch = {"model": name, "num_classes": 1000, "model_kwargs": {}}
    return save_checkpoint({"arch": arch, "model": model.state_dict(), "classes": [f"c{i}" for i in range(1000)],
                            "preprocessing": pre.to_dict()}, folder / f"{name}.ckpt")


def exports(ckpt: Path, folder: Path, calib: Path, val: Path | None, calib_images: int
            ) -> tuple[Path, Path, Path, float, float]:
    """(fp32 file, int8 file, int8 file with the first convolution and the classifier in fp32, and the
    top-1 agreement with fp32 of the two int8 files) of a checkpoint."""
    fp32 = export_onnx(ckpt, folder / f"{ckpt.stem}.onnx", val=val, check_images=16)
    int8 = {}
    for ends in ("no", "yes"):
        int8[ends] = export_onnx(ckpt, folder / f"{ckpt.stem}.int8-ends-{ends}.onnx", int8=True, calib=calib,
                                 calib_images=calib_images, val=val, check_images=16, min_agreement=0.0,
                                 fp32_ends=ends)
        print(int8[ends].to_text(), flush=True)
    return fp32.path, int8["no"].path, int8["yes"].path, int8["no"].agreement, int8["yes"].agreement


def speed(ckpt: Path, fp32: Path, int8: Path, int8_ends: Path, size: int, batches: list[int], rounds: int,
          min_time: float) -> None:
    from imgcls.checkpoint import load_model

    model, _ = load_model(ckpt)
    model.eval()
    cl = load_model(ckpt)[0].eval().to(memory_format=torch.channels_last)
    ort32, ort8, ort8_ends = OrtRunner(fp32), OrtRunner(int8), OrtRunner(int8_ends)

    def eager(x):
        with torch.inference_mode():
            return model(x)

    def eager_cl(x):
        with torch.inference_mode():
            return cl(x.contiguous(memory_format=torch.channels_last))

    variants = {"eager fp32 NCHW": eager, "eager channels_last": eager_cl, "ORT fp32": ort32, "ORT int8": ort8,
                "ORT int8, ends fp32": ort8_ends}
    for b in batches:
        x = torch.randn(b, 3, size, size)
        t = time_calls(variants, x, rounds=rounds, min_time=min_time)
        base = t["eager fp32 NCHW"]
        for k, sec in t.items():
            print(f"| {ckpt.stem} | {b} | {k} | {b / sec:,.1f} | {base / sec:.2f}x |", flush=True)


def end_to_end(sources: dict[str, Path], photos: list[Path], folder: Path, batch_size: int) -> None:
    """img/s of `imgcls predict SOURCE FOLDER --csv` (a fresh process: loading, decoding and all)."""
    link_dir = folder / "photos"
    link_dir.mkdir(exist_ok=True)
    for i, p in enumerate(photos):
        target = link_dir / f"{i:05d}{p.suffix}"
        if not target.exists():
            target.symlink_to(p.resolve())
    for backend, src in sources.items():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgcls", "predict", str(src), str(link_dir), "--csv", "--topk", "1",
                        "--batch-size", str(batch_size)], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        print(f"| imgcls predict {len(photos)} photos | {backend} | {len(photos) / wall:,.1f} img/s | {wall:.1f} s |",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet34,mobilenet_v2,efficientnet_lite0",
                   help="comma-separated registered models (randomly initialised) to time")
    p.add_argument("--size", type=int, default=224, help="input size in pixels")
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (the median is reported)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds each variant runs per round")
    p.add_argument("--checkpoint", help="a trained checkpoint: int8 agreement on --data's val set, and the end-to-end "
                                        "predict part runs on it")
    p.add_argument("--data", help="the checkpoint's data: a split folder (train/ calibrates, val/ checks)")
    p.add_argument("--calib-images", type=int, default=256, help="int8 calibration images")
    p.add_argument("--photos", default=str(SHARED_PHOTOS), help="folder of photos for the end-to-end predict part")
    p.add_argument("--n-photos", type=int, default=1000, help="how many photos the end-to-end part predicts (0: "
                                                              "no end-to-end part)")
    p.add_argument("--quick", action="store_true", help="smoke run: resnet18 at 64 px, batches 1,4, short rounds, "
                                                        "24 photos")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.size, args.batches, args.rounds, args.min_time = "resnet18", 64, "1,4", 2, 0.05
        args.n_photos, args.calib_images = 24, 16
    batches = [int(b) for b in args.batches.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="imgcls-bench-") as tmp:
        folder = Path(tmp)
        print("| model | batch | variant | img/s | vs eager fp32 |\n|---|---|---|---|---|", flush=True)
        last = None
        for name in args.models.split(","):
            ckpt = random_checkpoint(name, args.size, folder)
            fp32, int8, int8_ends, _, _ = exports(ckpt, folder, bundled_photos(), None, args.calib_images)
            speed(ckpt, fp32, int8, int8_ends, args.size, batches, args.rounds, args.min_time)
            last = (ckpt, fp32, int8)
        if args.checkpoint:
            ckpt = Path(args.checkpoint)
            fp32, int8, _, agreement, agreement_ends = exports(ckpt, folder, Path(args.data or bundled_photos()),
                                                               None, args.calib_images)
            print(f"int8 top-1 agreement with fp32 on the val set of {args.data}: {agreement:.2%} (all layers int8), "
                  f"{agreement_ends:.2%} (first convolution and classifier in fp32)", flush=True)
            last = (ckpt, fp32, int8)
        photos_dir = Path(args.photos)
        if not photos_dir.is_dir():
            photos_dir = bundled_photos()
            print(f"{args.photos} is absent: the end-to-end part uses the bundled photos", flush=True)
        photos = image_files(photos_dir, limit=args.n_photos)
        if last is not None and args.n_photos > 0:
            ckpt, fp32, int8 = last
            print("| end to end | backend | throughput | wall |\n|---|---|---|---|", flush=True)
            end_to_end({"pytorch": ckpt, "ORT fp32": fp32, "ORT int8": int8}, photos, folder, 32)


if __name__ == "__main__":
    main()
