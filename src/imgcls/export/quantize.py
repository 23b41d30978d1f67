"""Static int8 quantization with ONNX Runtime: QDQ format, per-channel int8 weights, uint8 activations
whose ranges are calibrated on training images prepared with the eval preprocessing.

Static, not dynamic: ONNX Runtime's dynamic int8 quantizes activations at run time and is several
times SLOWER than fp32 for CNNs on CPUs; static QDQ runs the convolutions in int8 kernels. Each
calibration method (MinMax, Percentile, Entropy) gives other activation ranges; the one whose top-1
agrees best with the fp32 model on validation images is kept. The stem convolution (raw pixels in)
and the classifier (logits out) are the layers whose rounding moves the top-1 most; left in fp32 they
cost a ResNet 7-15% of the int8 speed and brought a flowers ResNet-18's agreement from 98.9% to 99.7%
(benchmarks/RESULTS.md), so that form is the fallback below the agreement demanded.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgcls.data import Preprocessing
from imgcls.errors import DataError, ExportError, summary_of
from imgcls.export.images import uint8_batches
from imgcls.export.graph import INPUT, quiet_exporter, temp_path
from imgcls.export.session import OrtRunner, make_session, require

log = logging.getLogger(__name__)


def cpu_has_vnni(cpuinfo: str | None = None, machine: str | None = None) -> bool | None:
    """True when this x86 CPU has VNNI (AVX512_VNNI or AVX_VNNI), False when it has not, None when that
    cannot be read (no /proc/cpuinfo). Other architectures answer True: their int8 dot products do not
    saturate. `cpuinfo` and `machine` stand in for /proc/cpuinfo and platform.machine()."""
    import platform

    if (machine or platform.machine()).lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


def resolve_weight_bits(bits: str | int) -> tuple[int, ...]:
    """The weight precisions --weight-bits tries: 7 or 8 as given; auto = 8 on CPUs with VNNI (and non-x86
    ones), and both 8 and 7 elsewhere, the better agreeing one kept. Without VNNI, ONNX Runtime's x86 int8
    kernels (vpmaddubsw) add two uint8 x int8 products into a saturating int16, so 8-bit weights can clip
    (ONNX Runtime's advice for such machines: reduce_range, 7-bit weights); 7 bits cost precision where
    nothing clips. Measured on an AVX2 CPU (benchmarks/RESULTS.md): the EfficientNet-Lite0 flower model
    agrees with fp32 on 94.2% of its val photos with 8-bit weights and 97.8% with 7-bit ones."""
    if str(bits) in ("7", "8"):
        return (int(bits),)
    return (8,) if cpu_has_vnni() else (8, 7)


def _method(ort_quant, name: str):
    table = {"minmax": ort_quant.CalibrationMethod.MinMax, "percentile": ort_quant.CalibrationMethod.Percentile,
             "entropy": ort_quant.CalibrationMethod.Entropy}
    return table[name]


def _top1(session, batches: list[np.ndarray]) -> torch.Tensor:
    """The argmax class of every output position, flattened: one per image (a classifier) or one per
    pixel (a segmentation model, whose batches are single photos of their own sizes)."""
    name = session.get_inputs()[0].name
    return torch.cat([torch.from_numpy(session.run(None, {name: b})[0]).argmax(1).flatten() for b in batches])


def mean_iou(reference: torch.Tensor, got: torch.Tensor) -> float:
    """Mean IoU of the classes `got` against `reference` (flat class indices), over the classes present in
    either: how close int8's masks are to fp32's."""
    n = int(max(reference.max(), got.max())) + 1
    cm = torch.bincount(reference * n + got, minlength=n * n).reshape(n, n).double()
    union = cm.sum(0) + cm.sum(1) - cm.diag()
    present = union > 0
    return float((cm.diag()[present] / union[present]).mean())


@dataclass
class Quantized:
    """The int8 model `quantize_best` kept, how it was made, and what every candidate scored."""
    path: Path
    method: str
    weight_bits: int
    fp32_ends: bool  # the first convolution and the classifier were left in fp32
    agreement: float
    tried: dict[str, float]  # "<method> <bits>-bit[, ends fp32]" -> top-1 agreement with fp32
    temps: list[Path]  # its own temporary files (the rejected candidates) for the caller to remove
    miou: float | None = None  # segmentation: mean IoU of its masks against fp32's (mean_iou)


def end_layers(model) -> list[str]:
    """The names of the first and the last Conv/Gemm/MatMul node of an ONNX graph (in its topological
    order): the stem convolution, which sees the raw normalised pixels, and the classifier, whose
    errors go straight into the logits: the layers most sensitive to quantization."""
    weighted = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return sorted({weighted[0], weighted[-1]}, key=weighted.index) if weighted else []


def quantize_best(fp32: Path, fp32_runner: OrtRunner, calib_paths: list[Path], agree_paths: list[Path],
                  pre: Preprocessing, *, out: Path, methods: tuple[str, ...], metadata: dict[str, str],
                  weight_bits: tuple[int, ...] = (8,), fp32_ends: str = "no", target: float = 0.0,
                  threads: int | None = None) -> Quantized:
    """Quantize `fp32` under each of `methods` and each of `weight_bits` (7 = ONNX Runtime's
    reduce_range; see resolve_weight_bits) and keep the candidate whose top-1 agrees best with fp32 on
    `agree_paths` (on a tie the earlier). `fp32_ends`: "no" quantizes every layer; "yes" leaves the
    first convolution and the classifier in fp32 (end_layers); "auto" tries that only when no fully
    int8 candidate reaches `target`, the agreement the caller will demand. A segmentation model (`pre`
    without a crop) is compared pixel by pixel, each photo at its own resized size."""
    ort_quant = require("onnxruntime.quantization")
    onnx = require("onnx")
    # one image per calibration run: ONNX Runtime's histogram calibrators (percentile, entropy) cannot
    # stack batches of different sizes
    calib = [b for b, _ in uint8_batches(calib_paths, pre, batch_size=1)]
    if not calib:
        raise DataError("no readable calibration image")
    # normalised once: every candidate runs on the same arrays
    dense = pre.crop is None
    agree = [pre.normalize(b).contiguous().numpy()
             for b, _ in uint8_batches(agree_paths, pre, batch_size=1 if dense else 32)]
    reference = _top1(fp32_runner.session, agree)

    class Reader(ort_quant.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib)

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {INPUT: pre.normalize(b).contiguous().numpy()}

    prepared = temp_path(out, "prep")
    temps = [prepared]
    try:  # shape inference and Conv+BatchNorm folding first, as ONNX Runtime recommends before quantizing
        with quiet_exporter():
            ort_quant.shape_inference.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"ONNX Runtime could not prepare the model for quantization: {summary_of(e)}") from None
    ends = end_layers(onnx.load(str(prepared)))
    best: Quantized | None = None
    tried: dict[str, float] = {}
    rounds = {"no": (False,), "yes": (True,), "auto": (False, True)}[fp32_ends]
    for keep_ends in rounds:
        if keep_ends and fp32_ends == "auto" and best is not None and best.agreement >= target:
            break
        for bits in weight_bits:
            for m in methods:
                label = f"{m} {bits}-bit" + (", ends fp32" if keep_ends else "")
                q = temp_path(out, f"int8-{m}-{bits}{'-ends' if keep_ends else ''}")
                temps.append(q)
                try:  # the histogram calibrators print their progress to stdout, where predictions go
                    with quiet_exporter(), contextlib.redirect_stdout(io.StringIO()):
                        ort_quant.quantize_static(
                            str(prepared), str(q), Reader(), quant_format=ort_quant.QuantFormat.QDQ,
                            per_channel=True, weight_type=ort_quant.QuantType.QInt8,
                            activation_type=ort_quant.QuantType.QUInt8, calibrate_method=_method(ort_quant, m),
                            reduce_range=bits == 7, nodes_to_exclude=ends if keep_ends else None)
                except Exception as e:  # noqa: BLE001
                    raise ExportError(f"ONNX Runtime static quantization ({label}) failed: {summary_of(e)}") from None
                got = _top1(make_session(q, threads=threads), agree)
                a = tried[label] = (got == reference).float().mean().item()
                log.info("int8 %s calibration on %d images, %d-bit weights%s: top-1 agreement with fp32 %.2f%%", m,
                         len(calib_paths), bits, f", {' and '.join(ends)} in fp32" if keep_ends else "", 100 * a)
                if best is None or a > best.agreement:
                    best = Quantized(q, m, bits, keep_ends, a, tried, temps,
                                     miou=mean_iou(reference, got) if dense else None)
    assert best is not None
    model = onnx.load(str(best.path))  # the metadata goes into the one file that is kept
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(best.path))
    temps.remove(best.path)
    return best
