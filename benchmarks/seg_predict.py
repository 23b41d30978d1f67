"""Segmentation predict speed at CamVid's 480 x 360: PyTorch eager against ONNX Runtime fp32 (`imgcls export`),
in one process, interleaved rounds, medians, ratios to eager. Two rows per backend: the network alone
(one normalised [1, 3, 360, 480] batch -> class scores) and a whole mask as `imgcls predict` makes it
(MaskPredictor.mask_of: resize, normalise, scores, argmax at the photo's size; no file written).

    python benchmarks/seg_predict.py                                  # lraspp_efficientnet_lite0, 11 classes
    python benchmarks/seg_predict.py --checkpoint runs/camvid/best.ckpt
    python benchmarks/seg_predict.py --quick                          # a smoke run: fcn8s on a tiny MobileNetV2

Without --checkpoint the model is randomly initialised (speed does not depend on the weights). The export
(verified against PyTorch on a few photos: CamVid's val photos when ../shared has them, else the bundled
flower photos) takes a minute or two for EfficientNet-Lite0 and is not timed. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imgcls.checkpoint import save_checkpoint
from imgcls.export import export_onnx
from imgcls.inference import open_source
from imgcls.inference.seg_predict import MaskPredictor
from imgcls.models import create_model
from imgcls.paths import bundled_photos
from imgcls.weights import imagenet_preprocessing

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def random_checkpoint(name: str, kwargs: dict, classes: int, resize: int, folder: Path) -> Path:
    """A checkpoint of a randomly initialised segmentation model `name` (`classes` classes, eval at a
    `resize` px shorter side, the whole photo)."""
    model = create_model(name, num_classes=classes, **kwargs).eval()
    pre = imagenet_preprocessing(resize=resize, crop=None)
    palette = [[(37 * i) % 256, (91 * i) % 256, (151 * i) % 256] for i in range(classes + 1)]
    return save_checkpoint({"arch": {"model": name, "num_classes": classes, "model_kwargs": kwargs},
                            "model": model.state_dict(), "classes": [f"c{i}" for i in range(classes)],
                            "preprocessing": pre.to_dict(), "task": "segmentation",
                            "labels": {"void": classes, "palette": palette}}, folder / f"{name}.ckpt")


def timed(fn, *, seconds: float) -> float:
    """Calls per second of `fn` over at least `seconds` (one warm-up call first)."""
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 2:
        fn()
        n += 1
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="a segmentation checkpoint (default: a random lraspp_efficientnet_lite0)")
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per backend and row in each round")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads of both backends (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: a tiny model, 2 short rounds")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="imgcls-segbench-") as tmp:
        folder = Path(tmp)
        if args.checkpoint:
            ckpt = Path(args.checkpoint)
        elif args.quick:
            ckpt = random_checkpoint("fcn8s", {"backbone": "mobilenet_v2", "width_mult": 0.25}, 11,
                                     min(args.width, args.height), folder)
        else:
            ckpt = random_checkpoint("lraspp_efficientnet_lite0", {}, 11, min(args.width, args.height), folder)
        rounds, seconds = (2, 0.5) if args.quick else (args.rounds, args.seconds)
        val = CAMVID / "val" if (CAMVID / "val").is_dir() else bundled_photos()
        result = export_onnx(ckpt, folder / "model.onnx", val=val, check_images=2 if args.quick else 8,
                             threads=threads)
        print(result.to_text(), flush=True)
        sources = {"pytorch eager": open_source(ckpt), "onnxruntime fp32": open_source(result.path, threads=threads)}
        predictors = {k: MaskPredictor(s, device="cpu") for k, s in sources.items()}
        photo = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
        x = next(iter(predictors.values())).pre.normalize(torch.from_numpy(photo)[None])
        rows = {(k, what): [] for k in predictors for what in ("network", "mask")}
        with torch.no_grad():
            for _ in range(rounds):
                for k, p in predictors.items():
                    rows[k, "network"].append(timed(lambda p=p: p.scores(x), seconds=seconds))
                    rows[k, "mask"].append(timed(lambda p=p: p.mask_of(photo), seconds=seconds))
    name = (sources["pytorch eager"].arch or {}).get("model", "?")
    print(f"\n{name}, {args.width}x{args.height}, batch 1, {threads} thread(s), median of {rounds} rounds")
    print(f"{'backend':<18} {'what':<8} {'img/s':>8} {'x eager':>8}")
    for (k, what), speeds in rows.items():
        med = statistics.median(speeds)
        base = statistics.median(rows["pytorch eager", what])
        print(f"{k:<18} {what:<8} {med:>8.2f} {med / base:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
