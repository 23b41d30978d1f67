"""The model-zoo table of docs/models.md: every registered model, its size and cost, paper and accuracy.

Parameters and multiply-adds are computed here (`summarize`, one image at 224x224, 32x32 for
LeNet-5); the papers and the ImageNet top-1 of torchvision's official weights are data.

    python tools/zoo_table.py -o docs/models.md
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from imgcls.analysis.summary import summarize
from imgcls.models import create_model, list_models
from imgcls.weights import WEIGHTS

# (authors, title, year, arXiv id or venue) by family prefix; the longest matching prefix wins
PAPERS: dict[str, tuple[str, str, int, str]] = {
    "lenet": ("LeCun, Bottou, Bengio, Haffner", "Gradient-Based Learning Applied to Document Recognition", 1998,
              "Proc. IEEE 86(11)"),
    "alexnet": ("Krizhevsky", "One weird trick for parallelizing convolutional neural networks", 2014,
                "arXiv:1404.5997"),
    "alexnet_paper": ("Krizhevsky, Sutskever, Hinton",
                      "ImageNet Classification with Deep Convolutional Neural Networks", 2012, "NeurIPS 2012"),
    "vgg": ("Simonyan, Zisserman", "Very Deep Convolutional Networks for Large-Scale Image Recognition", 2014,
            "arXiv:1409.1556"),
    "googlenet": ("Szegedy et al.", "Going Deeper with Convolutions", 2014, "arXiv:1409.4842"),
    "resnet": ("He, Zhang, Ren, Sun", "Deep Residual Learning for Image Recognition", 2015, "arXiv:1512.03385"),
    "resnext": ("Xie, Girshick, Dollár, Tu, He", "Aggregated Residual Transformations for Deep Neural Networks", 2016,
                "arXiv:1611.05431"),
    "wide_resnet": ("Zagoruyko, Komodakis", "Wide Residual Networks", 2016, "arXiv:1605.07146"),
    "densenet": ("Huang, Liu, van der Maaten, Weinberger", "Densely Connected Convolutional Networks", 2016,
                 "arXiv:1608.06993"),
    "mobilenet_v1": ("Howard et al.", "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
                     "Applications", 2017, "arXiv:1704.04861"),
    "mobilenet_v2": ("Sandler, Howard, Zhu, Zhmoginov, Chen", "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
                     2018, "arXiv:1801.04381"),
    "mobilenet_v3": ("Howard et al.", "Searching for MobileNetV3", 2019, "arXiv:1905.02244"),
    "vit": ("Dosovitskiy et al.", "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", 2020,
            "arXiv:2010.11929"),
}

# models measured at another input than 224x224 and with another number of classes than 1000
NATIVE: dict[str, tuple[int, int]] = {"lenet5": (32, 10)}  # name: (input side, classes)


def _top1(name: str) -> float | None:
    """ImageNet-1k acc@1 of torchvision's IMAGENET1K_V1 weights: the weights registry's record, the one
    place that number is kept (resnext101_64x4d has only new-recipe weights, published as V1)."""
    spec = WEIGHTS.get(f"{name}.tv_in1k")
    return spec.acc1 if spec is not None else None


def paper_of(name: str) -> tuple[str, str, int, str]:
    prefix = max((p for p in PAPERS if name.startswith(p)), key=len, default=None)
    if prefix is None:
        raise KeyError(f"no paper recorded for {name!r}: add its family to PAPERS in tools/zoo_table.py")
    return PAPERS[prefix]


def zoo_rows(names: list[str] | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """One dict per model: name, input, classes, params, gmacs, paper fields, top1 (None if no weights)."""
    rows = []
    for name in names or list_models():
        if progress:
            progress(name)
        size, classes = NATIVE.get(name, (224, 1000))
        summary = summarize(create_model(name, num_classes=classes), size, name=name)
        authors, title, year, ref = paper_of(name)
        rows.append(dict(name=name, input=size, classes=classes, params=summary.total_params, gmacs=summary.gmacs,
                         authors=authors, title=title, year=year, ref=ref, top1=_top1(name)))
    return rows


def _num(v: float) -> str:
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def to_markdown(rows: list[dict]) -> str:
    """The table, in the order the papers appeared (then by size within a paper)."""
    lines = ["| model | params | GMACs | input | paper | torchvision top-1 |",
             "|---|---:|---:|---:|---|---:|"]
    for r in sorted(rows, key=lambda r: (r["year"], r["ref"], r["params"])):
        ref = r["ref"]
        if ref.startswith("arXiv:"):
            ref = f"[{ref}](https://arxiv.org/abs/{ref.removeprefix('arXiv:')})"
        top1 = f"{r['top1']:.3f}" if r["top1"] is not None else "—"
        lines.append(f"| `{r['name']}` | {_num(r['params'] / 1e6)} M | {_num(r['gmacs'])} | {r['input']} | "
                     f"{r['authors']}, *{r['title']}*, {r['year']}, {ref} | {top1} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, help="write the Markdown page here (default: print the table)")
    ap.add_argument("--models", default=None, help="shell-style pattern of model names (default: all)")
    args = ap.parse_args(argv)
    rows = zoo_rows(list_models(args.models), progress=lambda n: print(n, file=sys.stderr, flush=True))
    table = to_markdown(rows)
    if args.output is None:
        print(table)
    else:
        args.output.write_text(_PAGE.format(table=table), encoding="utf-8")
    return 0


_PAGE = """# Model zoo

Every model registered in `imgcls` (`imgcls models` lists them, `imgcls.create_model(name)`
builds them). Generated by

    python tools/zoo_table.py -o docs/models.md

do not edit the table by hand.

- **params**: parameters of the model as built by `create_model(name)`: 1000 classes (LeNet-5:
  10 classes, 3 input channels). GoogLeNet's count includes its two auxiliary classifiers
  (6.62 M without them, `aux_logits=False`: the number torchvision's docs give).
- **GMACs**: multiply-adds for one image of `input` x `input` pixels, counted by
  `torch.utils.flop_counter` through `imgcls summary NAME` (the papers' "FLOPs"; double them for
  FLOPs that count multiplications and additions separately). Attention is included for the ViTs.
- **torchvision top-1**: ImageNet-1k accuracy (%) of torchvision's official `IMAGENET1K_V1`
  weights, as published in the torchvision model docs (its weights metadata); "—" where
  torchvision has no weights. Every model with a number loads those files with `strict=True`
  (tests/models/test_parity.py). GoogLeNet's file needs `transform_input=True`; DenseNet's old
  key names are renamed on loading.

{table}
"""


if __name__ == "__main__":
    sys.exit(main())
