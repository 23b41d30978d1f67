"""The options of `imgcls compare`, as fields (imgcls.options): the CLI builds its flags from them."""
from __future__ import annotations

from dataclasses import dataclass

from imgcls.options import option


@dataclass
class CompareOptions:
    models: str | None = option(None, "comma-separated candidates: a weights name (efficientnet_lite0.in1k, "
                                      "resnet18.tv_in1k) trains a new head on its cached features; a model name "
                                      "uses its ImageNet weights when they are on this machine, else trains from "
                                      "scratch (default: every EfficientNet-Lite, the torchvision weights already "
                                      "downloaded, a small net from scratch when the budget has room)",
                                metavar="A,B,...")
    budget: str = option("10m", "time for the whole comparison (training, export and timing), e.g. 90s, 10m, 1h30m; "
                                "candidates that do not fit are dropped or shortened, and the plan says which",
                         metavar="TIME")
    out: str = option("runs/compare", "folder of the comparison: one run folder per candidate, compare.csv, "
                                      "compare.json, compare.png; run again with the same --out to resume",
                      short="-o", metavar="DIR")
    input_size: int | None = option(None, "input size of every candidate (default: its weights' own, 112 px "
                                          "from scratch)", ge=16)
    seed: int = option(0, "seed of the training runs", ge=0)
    val_fraction: float = option(0.1, "when DATA is one class-per-folder tree: the stratified validation fraction "
                                      "(the same split for every candidate)", gt=0, lt=1)
    progress: bool = option(True, "progress bars and lines while training and measuring")
