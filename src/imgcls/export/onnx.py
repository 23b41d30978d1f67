"""`imgcls export`: a checkpoint or registry weights as one self-contained ONNX file, verified against
PyTorch on real photos before it is written, optionally quantized to static int8.

Path: `torch.onnx.export(..., dynamo=True)`, the torch.export-based exporter (torch's default since
2.9; the TorchScript one is deprecated), which needs onnxscript; opset 18, a dynamic batch axis,
the graph optimised by onnxscript (a segmentation model: dynamic height and width too). The file holds
its class names, preprocessing, architecture and the imgcls version (a segmentation model's task,
void index and palette too) as metadata (session.META_KEYS), so predicting needs only the file. It is written
under a temporary name beside the output and renamed only once every check passed: a failed
export leaves nothing, and an existing file is replaced only by a verified one.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imgcls.checkpoint import describe_arch, load_source
from imgcls.data import Preprocessing, safe_name
from imgcls.errors import ConfigError, ExportError
from imgcls.paths import remove_stale_temps
from imgcls.weights import is_torch_file
from imgcls.export.options import CALIB_METHODS, FP32_ENDS
from imgcls.export.graph import OPSET, ScoresOnly, temp_path, to_onnx
from imgcls.export.images import export_photos, float_batches
from imgcls.export.session import OrtRunner, encode_metadata, require, written_by_export

log = logging.getLogger(__name__)

# a plain state dict has no class names or preprocessing to export (checkpoint.load_checkpoint's hint)
PLAIN_HINT = ("a plain state dict? it has no class names or preprocessing: export a checkpoint written by "
              "imgcls train, or a weights name")


@dataclass
class ExportResult:
    path: Path
    precision: str
    arch: dict[str, Any]
    checked_on: str = ""
    n_checked: int = 0
    max_abs_diff: float = 0.0
    rel_diff: float = 0.0
    agreement: float | None = None
    method: str | None = None
    method_agreement: dict[str, float] = field(default_factory=dict)
    weight_bits: int | None = None
    fp32_ends: bool = False
    size: int = 0
    task: str = "classification"
    pixel_agreement: float | None = None  # segmentation: fp32 ONNX vs PyTorch argmax masks
    miou_vs_fp32: float | None = None  # segmentation int8: mean IoU of its masks against fp32's

    def to_text(self) -> str:
        if self.task == "segmentation":
            return self._dense_text()
        lines = [f"verified on {self.n_checked} images from {self.checked_on}: ONNX Runtime vs PyTorch max abs "
                 f"logit difference {self.max_abs_diff:.2e} (relative {self.rel_diff:.2e})"]
        if self.agreement is not None:
            tried = ", ".join(f"{m} {a:.2%}" for m, a in self.method_agreement.items())
            ends = ", first convolution and classifier in fp32" if self.fp32_ends else ""
            lines.append(f"int8 ({self.method} calibration, {self.weight_bits}-bit weights{ends}) agrees with fp32 on top-1 "
                         f"for {self.agreement:.2%} of the images checked (tried: {tried})")
        lines.append(self._wrote())
        return "\n".join(lines)

    def _wrote(self) -> str:
        return (f"wrote {safe_name(self.path)} ({self.precision}, {self.size / 2**20:.1f} MB, "
                f"{describe_arch(self.arch)}, opset {OPSET})")

    def _dense_text(self) -> str:
        lines = [f"verified on {self.n_checked} images from {self.checked_on} at their own sizes: ONNX Runtime vs "
                 f"PyTorch max abs score difference {self.max_abs_diff:.2e} (relative {self.rel_diff:.2e}); the "
                 f"argmax masks agree on {self.pixel_agreement:.4%} of the pixels"]
        if self.agreement is not None:
            tried = ", ".join(f"{m} {a:.2%}" for m, a in self.method_agreement.items())
            ends = ", first and last convolution in fp32" if self.fp32_ends else ""
            lines.append(f"int8 ({self.method} calibration, {self.weight_bits}-bit weights{ends}) gives fp32's class "
                         f"to {self.agreement:.2%} of the pixels checked, mean IoU {self.miou_vs_fp32:.2%} against "
                         f"fp32's masks (tried: {tried})")
        lines.append(self._wrote() + ", any height and width")
        return "\n".join(lines)


def check_output(output: str | Path, source: str | Path) -> Path:
    """The output path, refused when it could destroy something: not a .onnx name, the source itself,
    or an existing file that `imgcls export` did not write (a checkpoint passed as -o by mistake, notes,
    another tool's model). An earlier export of that name is replaced, once the new one is verified."""
    out = Path(output)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"-o {output}: name the output file .onnx (e.g. -o model.onnx)")
    if out.is_dir():
        raise ConfigError(f"-o {output}: is a folder; name the .onnx file to write")
    if out.exists():
        if Path(source).exists() and out.resolve() == Path(source).resolve():
            raise ConfigError(f"-o {output}: is the source itself; choose another file name")
        try:
            with open(out, "rb") as f:
                torch_file = is_torch_file(f.read(4))
        except OSError as e:
            raise ConfigError(f"-o {output}: exists and cannot be read ({e.strerror}); imgcls does not overwrite "
                              "it: choose another name") from None
        if torch_file:
            raise ConfigError(f"-o {output}: exists and is a PyTorch file, not an ONNX model; imgcls does not "
                              "overwrite it: choose another name")
        if not written_by_export(out):
            raise ConfigError(f"-o {output}: exists and was not written by imgcls export; imgcls does not "
                              "overwrite it: choose another name, or move the file away first")
    if not out.parent.exists():
        raise ConfigError(f"-o {output}: folder {out.parent} does not exist")
    return out


def verify_fp32(model: torch.nn.Module, runner: OrtRunner, paths: list[Path], preprocessing: Preprocessing, *,
                tolerance: float, agreement: list[float] | None = None) -> tuple[float, float, int]:
    """(max abs logit difference, relative to the largest |logit|, images) of ONNX Runtime vs PyTorch;
    ExportError above `tolerance` (relative). A segmentation model (preprocessing without a crop) runs
    each photo at its own resized size through ScoresOnly, the module the graph was exported from (the
    photo padded to whole stride-32 cells, the "out" scores); `agreement`, when given, gets the
    share of the outputs' positions (pixels) whose argmax agrees appended."""
    max_diff, max_ref, n = 0.0, 0.0, 0
    same = total = 0
    dense = preprocessing.crop is None
    reference = ScoresOnly(model) if dense else model
    with torch.no_grad():
        for x in float_batches(paths, preprocessing, batch_size=1 if dense else 32):
            ref, got = reference(x), runner(x)
            max_diff = max(max_diff, (ref - got).abs().max().item())
            max_ref = max(max_ref, ref.abs().max().item())
            same += int((ref.argmax(1) == got.argmax(1)).sum())
            total += ref.argmax(1).numel()
            n += len(x)
    if agreement is not None and total:
        agreement.append(same / total)
    if n == 0:
        raise ExportError("no readable image to verify the export on")
    rel = max_diff / max(max_ref, 1e-12)
    if not rel <= tolerance:  # NaN fails too
        raise ExportError(f"ONNX Runtime disagrees with PyTorch: max abs logit difference {max_diff:.2e} "
                          f"(relative {rel:.2e} > tolerance {tolerance:.0e}) on {n} images; nothing was written")
    return max_diff, rel, n


def export_onnx(source: str | Path, output: str | Path | None = None, *, tolerance: float = 1e-4,
                check_images: int = 32, val: str | Path | None = None, int8: bool = False,
                calib: str | Path | None = None, calib_images: int = 256, min_agreement: float = 0.98,
                calib_methods: str | tuple[str, ...] = ("minmax", "percentile"), weight_bits: str | int = "auto",
                fp32_ends: str = "auto", threads: int | None = None) -> ExportResult:
    """Export `source` (a checkpoint or a weights name) to `output` (default: `<source name>.onnx`, with
    `int8` `<source name>.int8.onnx`), verified on `check_images` real photos (from `val`, else the
    calibration data's val part, else the bundled ones) against PyTorch (images.export_photos).

    `int8=True` quantizes statically (ONNX Runtime QDQ, per-channel weights) with `calib_images`
    training images of `calib` (its train part for a split folder or split.json index) under each of
    `calib_methods`, keeps the method whose top-1 agrees best with fp32 on the validation images (`val`,
    else `calib`'s val part, else calibration images not used to calibrate) and refuses to write
    the model when that agreement is below `min_agreement`. `weight_bits` (auto, 7 or 8): see
    quantize.resolve_weight_bits. `fp32_ends` (auto, yes, no): whether the first convolution and the
    classifier may stay in fp32; auto tries it only when no fully int8 model reaches `min_agreement`.

    A segmentation checkpoint exports its "out" scores with dynamic height and width too; each check
    photo runs at its own resized size (the report adds the argmax pixel agreement), the metadata holds
    the task, void index and palette, and int8 is compared with fp32 pixel by pixel (agreement and the
    mean IoU of its masks against fp32's).
    """
    require("onnxruntime")
    if int8 and not calib:
        raise ConfigError("--int8 needs --calib DATA: training images to calibrate the int8 ranges on")
    if calib and not int8:
        raise ConfigError("--calib is for --int8; add --int8 or leave --calib out")
    methods = tuple(m.strip() for m in calib_methods.split(",")) if isinstance(calib_methods, str) else calib_methods
    unknown = [m for m in methods if m not in CALIB_METHODS]
    if unknown or not methods:
        raise ConfigError(f"--calib-methods {','.join(methods)}: use one or more of {', '.join(CALIB_METHODS)}")
    if str(weight_bits) not in ("auto", "7", "8"):
        raise ConfigError(f"--weight-bits {weight_bits}: use auto, 7 or 8")
    if fp32_ends not in FP32_ENDS:
        raise ConfigError(f"--fp32-ends {fp32_ends}: use {', '.join(FP32_ENDS)}")
    photos = export_photos(calib, val, calib_images=calib_images, check_images=check_images)
    name = Path(source).stem if Path(source).is_file() else str(source)  # a weights name keeps its tag
    out = check_output(output or f"{name}{'.int8' if int8 else ''}.onnx", source)
    remove_stale_temps(out.parent, out.suffix)  # what an export killed with kill -9 left there

    src = load_source(source, plain_hint=PLAIN_HINT)
    if src.task not in ("classification", "multilabel", "segmentation"):
        raise ConfigError(f"{source}: a {src.task} model; exporting it to ONNX is not supported yet: `imgcls predict` "
                          "and `imgcls eval` take its checkpoint")
    if src.task == "multilabel" and int8:
        raise ConfigError(f"--int8 is checked by top-1 agreement with fp32, and {source} is multi-label; export it "
                          "without --int8")
    model, pre = src.network, src.preprocessing
    dense = src.task == "segmentation"
    if pre.crop is None and not dense:
        raise ConfigError(f"{source}: trained with --whole-photo (no centre crop: the input's shape follows the "
                          "photo's); exporting that to ONNX is not supported yet: predict and eval take its checkpoint")
    metadata = dict(classes=src.classes, preprocessing=pre, arch=src.arch, source=src.name, opset=OPSET,
                    calibration=src.calibration, task=src.task)  # a multi-label model's thresholds: in calibration
    if dense:
        metadata |= dict(labels=src.labels)
    fp32 = temp_path(out, "fp32")
    temps = [fp32]
    try:
        # a segmentation model traces at a modest size: its height and width stay dynamic
        to_onnx(model, fp32, input_size=pre.crop or min(pre.resize, 128), spatial=dense,
                metadata=encode_metadata(precision="fp32", **metadata))
        runner = OrtRunner(fp32, threads=threads)
        pixels: list[float] = []
        diff, rel, n = verify_fp32(model, runner, photos.check, pre, tolerance=tolerance, agreement=pixels)
        result = ExportResult(out, "fp32", src.arch, photos.checked_on, n, diff, rel, task=src.task)
        if dense:
            result.pixel_agreement = pixels[0]
        final = fp32
        if int8:
            from imgcls.export.quantize import quantize_best, resolve_weight_bits

            bits = resolve_weight_bits(weight_bits)
            q = quantize_best(fp32, runner, photos.calib, photos.agree, pre, out=out, methods=methods,
                              metadata=encode_metadata(precision="int8", **metadata), weight_bits=bits,
                              fp32_ends=fp32_ends, target=min_agreement, threads=threads)
            final, agreement = q.path, q.agreement
            temps += [*q.temps, final]  # final is renamed away below unless a check refuses it
            result.precision, result.method, result.agreement = "int8", q.method, agreement
            result.method_agreement, result.weight_bits, result.fp32_ends = q.tried, q.weight_bits, q.fp32_ends
            result.miou_vs_fp32 = q.miou
            on = "on the class of" if dense else "on top-1 for"
            of = f"the pixels of {len(photos.agree)} validation images" if dense else f"{len(photos.agree)} validation images"
            if agreement < min_agreement:
                raise ExportError(f"the int8 model agrees with fp32 {on} {agreement:.2%} of {of} (best of "
                                  f"{', '.join(q.tried)}), below "
                                  f"--min-agreement {min_agreement:.0%}: {out} not written; calibrate on more "
                                  "images (--calib-images), accept it with a lower --min-agreement, or use the "
                                  "fp32 export")
        os.replace(final, out)
        result.size = out.stat().st_size
        return result
    finally:
        for t in temps:
            t.unlink(missing_ok=True)
