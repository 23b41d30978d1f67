"""What `imgcls compare` measures of one trained run folder: val top-1 and macro-F1 (the run's report of
its best weights), parameters and MACs (analysis.summarize), best.ckpt's size, the ONNX exports (fp32 and
static int8, through export.export_onnx: verified, calibrated on the train part), int8's top-1 and its
agreement with fp32 on the val photos, and latency at batch 1 and 32 under PyTorch eager, ONNX Runtime
fp32 and ONNX Runtime int8.

Latency is timed as benchmarks/inference.py times it: a warm-up call each, then interleaved rounds in
which every backend runs for at least LATENCY_MIN_TIME seconds, the median per call kept. The input is
random (speed does not depend on the pixels) at the candidate's input size; the threads are torch's,
and ONNX Runtime gets as many (export.session.default_threads).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from imgcls.compare.plan import CALIB_IMAGES, LATENCY_MIN_TIME, LATENCY_ROUNDS
from imgcls.errors import ImgclsError, summary_of

log = logging.getLogger("imgcls")

BATCHES = (1, 32)
BACKENDS = ("eager", "ort_fp32", "ort_int8")
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


def onnx_missing() -> str | None:
    """Why the ONNX columns are empty on this machine (a missing package), or None when export can run."""
    missing = [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed: pip install 'imgcls[export]'" if missing else None


def time_calls(variants: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, *, rounds: int = LATENCY_ROUNDS,
               min_time: float = LATENCY_MIN_TIME) -> dict[str, float]:
    """Median seconds per call of each variant on `x` over `rounds` interleaved rounds (each variant runs at
    least `min_time` s per round), after one warm-up call each."""
    for fn in variants.values():
        fn(x)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            n, start = 0, time.perf_counter()
            while True:
                fn(x)
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            samples[k].append(elapsed / n)
    return {k: statistics.median(v) for k, v in samples.items()}


def run_report(run_dir: Path) -> dict[str, float]:
    """val top-1 and macro-F1 of the run's best weights: its report.json (written by the task at train end)."""
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return {"top1": float(report["top1"]), "macro_f1": float(report["macro"]["f1"]), "val_images": int(report["n"])}


def exports(best: Path, data: Path, n_train: int) -> tuple[Path, Path]:
    """best.ckpt as model.onnx (fp32) and model.int8.onnx (static int8 calibrated on `data`'s train part,
    written whatever its agreement: compare reports it) beside it, each verified by export_onnx."""
    from imgcls.export import export_onnx

    root = list(logging.root.handlers)
    try:
        fp32 = export_onnx(best, best.parent / "model.onnx", val=data, check_images=32)
        int8 = export_onnx(best, best.parent / "model.int8.onnx", int8=True, calib=data,
                           calib_images=min(CALIB_IMAGES, n_train), min_agreement=0.0)
    finally:  # onnxruntime.quantization calls logging.basicConfig when imported: every later line would show twice
        logging.root.handlers[:] = root
    return fp32.path, int8.path


def onnx_top1(fp32: Path, int8: Path, val: list[tuple[Path, int]], pre: Any) -> dict[str, float]:
    """top-1 of the fp32 and int8 files on the val photos and int8's top-1 agreement with fp32 (one decode)."""
    from imgcls.export import OrtRunner
    from imgcls.export.images import uint8_batches

    labels = {p: y for p, y in val}
    runners = {"ort_fp32": OrtRunner(fp32), "ort_int8": OrtRunner(int8)}
    preds: dict[str, list[torch.Tensor]] = {k: [] for k in runners}
    truth: list[int] = []
    for images, paths in uint8_batches([p for p, _ in val], pre, batch_size=32):
        x = pre.normalize(images).contiguous()
        for k, run in runners.items():
            preds[k].append(run(x).argmax(1))
        truth += [labels[p] for p in paths]
    if not truth:
        raise ImgclsError("no readable val image to check the ONNX files on")
    t = torch.tensor(truth)
    got = {k: torch.cat(v) for k, v in preds.items()}
    return {"ort_fp32": (got["ort_fp32"] == t).float().mean().item(),
            "ort_int8": (got["ort_int8"] == t).float().mean().item(),
            "int8_agreement": (got["ort_int8"] == got["ort_fp32"]).float().mean().item()}


def measure_run(run_dir: Path, data: Path, val: list[tuple[Path, int]], n_train: int) -> dict[str, Any]:
    """Every column of one candidate's row (see the module docstring); the ONNX ones None, with `onnx_note`
    saying why, when the export extra is missing or the export fails."""
    from imgcls.analysis import summarize
    from imgcls.checkpoint import load_source

    best = run_dir / "best.ckpt"
    source = load_source(best)
    model, pre = source.network.eval(), source.preprocessing
    row: dict[str, Any] = run_report(run_dir)
    summary = summarize(model, pre.crop)
    row |= {"params": summary.total_params, "macs": summary.total_macs, "ckpt_bytes": best.stat().st_size,
            "top1_by_backend": {"eager": row["top1"], "ort_fp32": None, "ort_int8": None},
            "int8_agreement": None, "onnx_bytes": None, "int8_bytes": None, "onnx_note": onnx_missing()}

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    variants: dict[str, Callable] = {"eager": eager}
    if row["onnx_note"] is None:
        try:
            fp32, int8 = exports(best, data, n_train)
            row |= onnx_top1(fp32, int8, val, pre)
            row |= {"onnx_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size}
            row["top1_by_backend"] |= {"ort_fp32": row.pop("ort_fp32"), "ort_int8": row.pop("ort_int8")}
            from imgcls.export import OrtRunner

            variants |= {"ort_fp32": OrtRunner(fp32), "ort_int8": OrtRunner(int8)}
        except ImgclsError as e:
            row["onnx_note"] = f"export failed: {summary_of(e)}"
            log.warning("imgcls: %s: ONNX columns left empty: %s", run_dir.name, row["onnx_note"])
    latency: dict[str, dict[str, float | None]] = {k: {str(b): None for b in BATCHES} for k in BACKENDS}
    for b in BATCHES:
        x = torch.randn(b, 3, pre.crop, pre.crop)
        for k, seconds in time_calls(variants, x, rounds=LATENCY_ROUNDS if b == 1 else min(3, LATENCY_ROUNDS),
                                 min_time=LATENCY_MIN_TIME).items():
            latency[k][str(b)] = 1000 * seconds
    row["latency_ms"] = latency
    return row
