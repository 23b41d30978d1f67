"""The `imgcls` command line: argument parsing only; every command calls the Python API."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imgcls.errors import ImgclsError


def _cmd_models(args: argparse.Namespace) -> int:
    from imgcls.models import list_models

    print("\n".join(list_models(args.pattern)))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from imgcls.analysis import summarize
    from imgcls.models import create_model

    kwargs = {"stride_in_1x1": True} if args.stride_in_1x1 else {}
    try:
        model = create_model(args.model, num_classes=args.num_classes, **kwargs)
    except TypeError as e:
        raise ImgclsError(f"{args.model} does not take that option: {e}") from None
    summary = summarize(model, args.input, in_chans=args.in_chans, depth=args.depth, name=args.model)
    print(summary.to_json() if args.json else summary.to_text())
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from imgcls.data import make_split, write_split

    split = make_split(args.source, val=args.val, test=args.test, seed=args.seed)
    where = write_split(split, args.output, mode=args.mode, force=args.force)
    print(split.table())
    print(f"wrote {args.mode} split (seed {args.seed}, per-class counts rounded down) to {where}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from imgcls.data.check import check_dataset

    report = check_dataset(args.path, min_side=args.min_side)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.clean else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcls", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet*'")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("summary", help="per-layer table: output sizes, parameters, FLOPs")
    p.add_argument("model")
    p.add_argument("--input", type=int, default=224, metavar="SIZE", help="input height and width (default 224)")
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--depth", type=int, default=None,
                   help="group rows at this level of module names (1: stem and stages); default: every layer")
    p.add_argument("--stride-in-1x1", action="store_true",
                   help="ResNet bottlenecks: the paper's v1 stride on the first 1x1 instead of the 3x3")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("split", help="stratified, reproducible train/val(/test) split of a class-per-folder set")
    p.add_argument("source", help="folder with one sub-folder of images per class (never modified)")
    p.add_argument("-o", "--output", required=True, help="destination folder (must be empty unless --force)")
    p.add_argument("--val", type=float, default=0.1, help="fraction of each class for validation (default 0.1)")
    p.add_argument("--test", type=float, default=0.0, help="fraction of each class for test (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("copy", "link", "index"), default="copy",
                   help="copy files, symlink them, or write only split.json (default copy)")
    p.add_argument("--force", action="store_true", help="replace an earlier split in a non-empty destination")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("check", help="find unreadable, too small and duplicated images, and split leaks",
                       description="exit code: 0 clean, 1 findings, 2 unusable input")
    p.add_argument("path", help="class-per-folder set, a split folder (train/ val/ test/), or split.json")
    p.add_argument("--min-side", type=int, default=224, help="report images whose shorter side is below this")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImgclsError as e:
        print(f"imgcls: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
