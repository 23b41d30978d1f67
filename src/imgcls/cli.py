"""The `imgcls` command line: argument parsing only; every command calls the Python API."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from imgcls.errors import ImgclsError


def at_least(minimum: int):
    """An argparse type for an integer option with a lower bound: `--batch-size 0` is refused while
    parsing, with the sub-command's usage and "must be >= 1"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {minimum}")
        return value

    parse.__name__ = "int"
    return parse


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
    low = max(getattr(model, "min_input_size", (1, 1)))
    if args.input < low:
        raise ImgclsError(f"--input {args.input} is below {args.model}'s minimum of {low} px; use --input {low} or more")
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


def _setup_logging() -> None:
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, _value) -> None:
            pass

    log = logging.getLogger("imgcls")
    if not log.handlers:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config field (see engine.config); defaults are left out of the namespace so
    that only the flags a user gives override a --config file."""
    import json

    from imgcls.engine.config import field_specs

    groups = {}
    for section, f, typ in field_specs():
        meta = dict(f.metadata)
        help_text = meta.pop("help", "")
        kind = meta.pop("cli", None)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        g = groups.setdefault(section, p.add_argument_group(f"{section} options"))
        if kind == "positional":
            g.add_argument(f.name, nargs="?", default=argparse.SUPPRESS, help=help_text)
            continue
        flag = "--" + f.name.replace("_", "-")
        kw: dict = {"default": argparse.SUPPRESS, "help": f"{help_text} (default: {default})", "dest": f.name}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind == "json":
            kw["type"], kw["metavar"] = json.loads, "JSON"
        elif "nargs" in meta:
            kw.update(nargs=meta["nargs"], type=meta["type"])
        else:
            kw["type"] = _checked(flag, f, typ)
            if "choices" in meta:
                kw["choices"] = meta["choices"]
        if "nargs" in meta:
            kw["type"] = _checked(flag, f, meta["type"], each=True)
        g.add_argument(flag, **kw)


def _checked(flag: str, f: dataclasses.Field, typ: type, *, each: bool = False):
    """An argparse type that parses a config field's value and checks its range, so a bad value is
    refused while parsing, with the sub-command's usage: "--batch-size 0: must be >= 1"."""
    from imgcls.engine.config import check_item, check_value

    base = next((a for a in getattr(typ, "__args__", ()) if a is not type(None)), typ)

    def parse(text: str):
        try:
            value = base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if base is int else 'a number'}") from None
        try:
            return check_item(value, f.metadata, base) if each else check_value(flag, value, f, typ)
        except ImgclsError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag} ")) from None

    parse.__name__ = base.__name__
    return parse


def _cmd_train(args: argparse.Namespace) -> int:
    from imgcls.engine import Config, train
    from imgcls.engine.config import field_specs

    config = Config.load(args.config) if args.config else Config()
    given = config.changed_fields() if args.config else set()  # what a --resume must reconcile
    for _, f, _ in field_specs():
        if hasattr(args, f.name):
            config.set(f.name, getattr(args, f.name))
            given.add(f.name)
    _setup_logging()
    result = train(config, given=given - {"resume"})
    return 130 if result.interrupted else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from imgcls.engine.evaluate import evaluate

    _setup_logging()
    report, out = evaluate(args.checkpoint, args.data, part=args.part, batch_size=args.batch_size,
                           workers=args.workers, device=args.device, out_dir=args.output, n_wrong=args.wrong,
                           draft=not args.no_draft)
    print(report.to_text())
    print(f"report, confusion_matrix.csv and confusion_matrix.png in {out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import json

    from imgcls.inference import Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size,
                                          draft=not args.no_draft)
    preds = predictor.predict(args.inputs, topk=args.topk)
    if args.json:
        print(json.dumps([p.to_dict() for p in preds], indent=2))
    elif args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["path", "rank", "label", "prob", "error"])
        for p in preds:
            if p.error:
                w.writerow([p.source, "", "", "", p.error])
            for r, (lab, pr) in enumerate(zip(p.labels, p.probs), start=1):
                w.writerow([p.source, r, lab, f"{pr:.6f}", ""])
    else:
        for p in preds:
            if p.error:
                print(f"{p.source}: error: {p.error}")
            else:
                print(f"{p.source}: " + ", ".join(f"{lab} {pr:.1%}" for lab, pr in zip(p.labels, p.probs)))
    bad = sum(1 for p in preds if p.error)
    if bad:
        print(f"imgcls: {bad} of {len(preds)} file(s) could not be read", file=sys.stderr)
    return 1 if bad else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from imgcls.demo import run_demo

    _setup_logging()
    return run_demo(out_dir=args.output, epochs=args.epochs, model=args.model, progress=not args.no_progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcls", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet*'")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("summary", help="per-layer table: output sizes, parameters, FLOPs")
    p.add_argument("model", help="registered model name (see `imgcls models`)")
    p.add_argument("--input", type=at_least(1), default=224, metavar="SIZE", help="input height and width (default 224)")
    p.add_argument("--in-chans", type=at_least(1), default=3, help="input channels (default 3)")
    p.add_argument("--num-classes", type=at_least(0), default=1000, help="classifier outputs; 0: no classifier (default 1000)")
    p.add_argument("--depth", type=at_least(1), default=None,
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

    p = sub.add_parser("train", help="train a model on a class-per-folder set (transfer learning or from scratch)",
                       usage="%(prog)s [DATA] [--model NAME] [--epochs N] [options]  (all options: --help)",
                       description="Every option is a field of imgcls.engine.Config; --config replays a run's "
                                   "config.json/yaml and the options given beside it win.")
    p.add_argument("--config", help="config.json or config.yaml of an earlier run")
    _add_config_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5, per-class P/R/F1, confusion matrix and worst mistakes of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("data", help="class-per-folder set, a split folder (its val/ part) or split.json")
    p.add_argument("--part", help="which part of a split (train, val, test)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--output", help="report folder (default: beside the checkpoint, eval-<data name>)")
    p.add_argument("--wrong", type=int, default=10, help="how many confidently wrong images to list")
    p.add_argument("--no-draft", action="store_true",
                   help="decode JPEGs at full size (torchvision's exact pixels) instead of letting JPEG draft "
                        "mode reduce photos at least twice the resize size; slower on big photos")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="top-k classes of images, folders or globs")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or globs")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-draft", action="store_true",
                   help="decode JPEGs at full size (torchvision's exact pixels) instead of letting JPEG draft "
                        "mode reduce photos at least twice the resize size; slower on big photos")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("demo", help="train a small ResNet on the bundled flower photos, evaluate, predict (offline)")
    p.add_argument("-o", "--output", default="runs", help="parent folder of the demo's run folder")
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's tuned setting")
    p.add_argument("--model", default=None, help="default: the demo's small ResNet")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_demo)
    for name, sub_parser in sub.choices.items():  # errors after parsing show the sub-command's usage
        sub_parser.set_defaults(_parser=sub_parser)
    return parser


def _refuse_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Unknown arguments are reported by the sub-command's own parser (its usage, not the top-level
    one), with the closest real option: "unrecognized arguments: --input-szie (did you mean --input-size?)"."""
    import difflib

    sub = getattr(args, "_parser", parser)
    options = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for word in extra:
        close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1) if word.startswith("-") else []
        hints.append(f"{word} (did you mean {close[0]}?)" if close else word)
    sub.error("unrecognized arguments: " + " ".join(hints))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _refuse_unknown(parser, args, extra)
    try:
        return args.func(args)
    except ImgclsError as e:
        print(f"imgcls: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
