"""The options of `imgcls export`, as fields (imgcls.options): the CLI builds the flags from them."""
from __future__ import annotations

from dataclasses import dataclass

from imgcls.options import option, threads_option

CALIB_METHODS = ("minmax", "percentile", "entropy")
FP32_ENDS = ("auto", "yes", "no")


@dataclass
class ExportOptions:
    output: str | None = option(None, "the .onnx file to write (default: <source name>.onnx, or .int8.onnx with "
                                      "--int8)", short="-o")
    tolerance: float = option(1e-4, "largest ONNX Runtime vs PyTorch logit difference accepted, relative to the "
                                     "largest logit; above it nothing is written", gt=0)
    check_images: int = option(32, "real photos to verify the export on", ge=1)
    val: str | None = option(None, "validation photos for the checks: a folder of photos, or the val part of a split "
                                   "folder or split.json index (default: the val part of --calib, else the bundled "
                                   "flower photos)")
    int8: bool = option(False, "quantize to static int8 (ONNX Runtime QDQ, per-channel weights); needs --calib")
    calib: str | None = option(None, "training images to calibrate int8 on: a class-per-folder set, or the train "
                                     "part of a split folder or split.json index")
    calib_images: int = option(256, "how many calibration images, spread over the folder", ge=1)
    min_agreement: float = option(0.98, "refuse to write the int8 model when its top-1 agrees with fp32 on less "
                                        "than this fraction of the validation images (a segmentation model: of "
                                        "their pixels)", ge=0, le=1)
    calib_methods: str = option("minmax,percentile", "calibration methods to try, comma-separated (minmax, "
                                                     "percentile, entropy); the best agreeing one is kept")
    weight_bits: str = option("auto", "int8 weight precision: 8, or 7 (ONNX Runtime's reduce_range): on x86 CPUs "
                                      "without VNNI the int8 kernels add pairs of products in saturating 16-bit "
                                      "sums, and 7-bit weights keep them in range; auto = 8 on CPUs with VNNI, "
                                      "else both tried and the better agreeing kept",
                              choices=("auto", "7", "8"))
    fp32_ends: str = option("auto", "leave the first convolution and the classifier in fp32, the layers most "
                                    "sensitive to quantization (a ResNet then runs 7-15% slower than fully int8): auto = "
                                    "only when no fully int8 model reaches --min-agreement", choices=FP32_ENDS)
    threads: int | None = threads_option()
