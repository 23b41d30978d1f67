"""The options of the commands whose Python API takes plain arguments (`summary`, `split`, `check`, `demo`,
`cache`), as fields (imgcls.options), so the CLI builds their flags as it builds train's, eval's and
serve's. Their positional arguments are in the command table (cli/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass

from imgcls.options import images_option, label_col_option, label_sep_option, option, path_col_option


@dataclass
class SummaryOptions:
    input: int = option(224, "input height and width", ge=1, metavar="SIZE")
    in_chans: int = option(3, "input channels", ge=1)
    num_classes: int = option(1000, "classifier outputs; 0: no classifier", ge=0)
    depth: int | None = option(None, "group rows at this level of module names (1: stem and stages); default: every "
                                     "layer", ge=1)
    model_kw: dict = option({}, "a builder argument, repeatable: e.g. stride_in_1x1=true (ResNet bottlenecks: the "
                                "paper's v1 stride on the first 1x1 instead of the 3x3), zero_init_residual=true",
                            cli="model_kw")
    json: bool = option(False, "machine-readable output", cli="switch")


@dataclass
class SplitOptions:
    output: str = option(None, "destination folder: new or empty, or holding an earlier split (with --force)",
                         short="-o", metavar="DEST", required=True)
    val: float = option(0.1, "fraction of each class for validation")
    test: float = option(0.0, "fraction of each class for test")
    seed: int = option(0, "seed of the per-class shuffles", ge=0)
    mode: str = option("copy", "copy files, symlink them, or write only split.json (a multi-label CSV: files under "
                               "DEST/<part>/ and DEST/labels.csv, or with index only labels.csv)",
                       choices=("copy", "link", "index"))
    force: bool = option(False, "replace an earlier imgcls split in DEST: delete only the files listed in its "
                                ".imgcls-split.json, then its emptied folders; any other file is kept, and a DEST "
                                "without that list is refused", cli="switch")
    dedup: bool = option(False, "drop byte-identical copies before splitting: of copies within one class keep the "
                                "first (by path); of an image found in two or more classes drop every copy, as its "
                                "label is ambiguous (default: only warn)", cli="switch")
    images: str | None = images_option()
    path_col: str | None = path_col_option()
    label_col: str | None = label_col_option()
    label_sep: str | None = label_sep_option()


@dataclass
class CheckOptions:
    min_side: int | None = option(None, "flag images whose shorter side is below PX (default: only below 32 px, too "
                                        "small to show anything; the default transforms upsample photos smaller "
                                        "than 224 px fine)", metavar="PX")
    verbose: bool = option(False, "list every finding (default: the first 5 of each kind)", short="-v",
                           cli="switch")
    json: bool = option(False, "machine-readable report with every finding", cli="switch")
    images: str | None = images_option()
    path_col: str | None = path_col_option()
    label_col: str | None = label_col_option()
    label_sep: str | None = label_sep_option()


@dataclass
class DemoOptions:
    output: str = option("runs", "parent folder of the demo's run folder", short="-o")
    epochs: int | None = option(None, "default: the demo's tuned setting", ge=1)
    model: str | None = option(None, "train this model from scratch instead (e.g. resnet18; default: "
                                     "EfficientNet-Lite0 transfer)")
    progress: bool = option(True, "show progress while training: a bar on a terminal, elsewhere a line at 25/50/75% "
                                  "of a pass that takes more than 10 s")


@dataclass
class CacheOptions:
    list: bool = option(False, "each cache: size, when it was built, image count, source folder (the default)",
                        cli="switch", exclusive="what")
    clear: bool = option(False, "delete imgcls's cache files (<key>.u8, <key>.json, temporaries of stopped builds) "
                                "and say how much that freed; a cache that a running process builds or reads is "
                                "kept (and named), other files in the folder are left alone", cli="switch",
                         exclusive="what")
    dir: str | None = option(None, "the cache folder to list or clear instead of the default one")
