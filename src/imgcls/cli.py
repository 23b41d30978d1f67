"""The `imgcls` command line: argument parsing only; every command calls the Python API."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from imgcls import __version__
from imgcls.errors import ConfigError, ImgclsError


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


def parse_model_kw(text: str) -> dict:
    """One `--model-kw`: KEY=VALUE (VALUE read as JSON when it can be: true, 3, 0.2, null; else a
    string) or a JSON object of several."""
    import json

    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object ({e})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
        return value
    key, eq, raw = text.partition("=")
    if not eq or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. stride_in_1x1=true")
    try:
        return {key: json.loads({"True": "true", "False": "false", "None": "null"}.get(raw, raw))}
    except ValueError:
        return {key: raw}


class MergeKw(argparse.Action):
    """Repeated `--model-kw` values merge into one dict (a later key wins)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, {**(current if isinstance(current, dict) else {}), **values})


def _cmd_models(args: argparse.Namespace) -> int:
    from imgcls.models import list_models

    print("\n".join(list_models(args.pattern)))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from imgcls.analysis import summarize
    from imgcls.models import create_model

    kwargs = args.model_kw or {}
    try:
        model = create_model(args.model, num_classes=args.num_classes, **kwargs)
    except TypeError as e:
        raise ImgclsError(f"{args.model} does not take the option(s) {kwargs}: {e}") from None
    summary = summarize(model, args.input, in_chans=args.in_chans, depth=args.depth, name=args.model)
    print(summary.to_json() if args.json else summary.to_text())
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from imgcls.data import make_split, safe_name, write_split

    split = make_split(args.source, val=args.val, test=args.test, seed=args.seed,
                       duplicates="drop" if args.dedup else "report")
    where = write_split(split, args.output, mode=args.mode, force=args.force)
    for line in split.duplicate_warnings():
        print(f"imgcls: warning: {line}", file=sys.stderr)
    print(split.table())
    print(f"wrote {args.mode} split (seed {args.seed}, per-class counts rounded down) to {safe_name(where)}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from imgcls.data.check import check_dataset

    report = check_dataset(args.path, min_side=args.min_side)
    print(report.to_json() if args.json else report.to_text(verbose=args.verbose))
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


def add_option_flags(p: argparse.ArgumentParser, klass: type, *, title: str | None = None,
                     suppress_defaults: bool = False) -> None:
    """One flag per field of an options dataclass (imgcls.options): its help, range and default come
    from the field. With `suppress_defaults` a flag not given leaves no attribute, so that only the
    flags a user gives override a --config file (train)."""
    from imgcls.options import flag_of, option_fields

    g = p.add_argument_group(title) if title else p
    for f, typ in option_fields(klass):
        meta = dict(f.metadata)
        help_text, kind = meta.pop("help", "").replace("%", "%%"), meta.pop("cli", None)  # argparse formats help
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if kind == "positional":
            g.add_argument(f.name, nargs="?", default=argparse.SUPPRESS if suppress_defaults else default,
                           help=help_text)
            continue
        flag = flag_of(f)
        names = [meta["short"], flag] if "short" in meta else [flag]
        kw: dict = {"default": argparse.SUPPRESS if suppress_defaults else default, "dest": f.name,
                    "help": f"{help_text} (default: {str(default).replace('%', '%%')})"}
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        if bool in (typ, *getattr(typ, "__args__", ())):  # bool, or bool | None (None: decided later)
            kw["action"] = argparse.BooleanOptionalAction
        elif kind == "model_kw":  # --model-kw KEY=VALUE, repeatable; --model-kwargs JSON is the same flag
            kw.update(type=parse_model_kw, metavar="KEY=VALUE", action=MergeKw)
            names = ["--model-kw", flag]
        elif "nargs" in meta:
            kw.update(nargs=meta["nargs"], type=_checked(flag, f, meta["type"], each=True))
        else:
            kw["type"] = _checked(flag, f, typ)
            if "choices" in meta:
                kw["choices"] = meta["choices"]
        g.add_argument(*names, **kw)


def _options(args: argparse.Namespace, klass: type):
    import dataclasses as dc

    return klass(**{f.name: getattr(args, f.name) for f in dc.fields(klass)})


def _checked(flag: str, f: dataclasses.Field, typ: type, *, each: bool = False):
    """An argparse type that parses a config field's value and checks its range, so a bad value is
    refused while parsing, with the sub-command's usage: "--batch-size 0: must be >= 1"."""
    from imgcls.options import check_item, check_value

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
    from imgcls.runtime import keep_freed_memory

    keep_freed_memory()  # this process only: the step's tensors stop page-faulting (see its docstring)
    result = train(config, given=given - {"resume"})
    return 130 if result.interrupted else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses as dc

    from imgcls.data import safe_name
    from imgcls.inference import EvalOptions, evaluate

    _setup_logging()
    report, out = evaluate(args.checkpoint, args.data, **dc.asdict(_options(args, EvalOptions)))
    print(report.to_text())
    cams = " and wrong_cam.png (Grad-CAM of the worst mistakes)" if args.cam and report.top1_correct < report.n else ""
    print(f"report.txt, report.json, confusion_matrix.csv, confusion_matrix.png{cams} in {safe_name(out)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from imgcls.inference import Predictor, PredictOptions
    from imgcls.inference.predictor import format_predictions
    from imgcls.reports import skipped_line

    opts = _options(args, PredictOptions)
    predictor = Predictor.load(args.checkpoint, device=opts.device, batch_size=opts.batch_size, draft=opts.draft,
                               threads=opts.threads)
    n_classes = len(predictor.classes)
    if args.topk > n_classes:
        print(f"imgcls: --topk {args.topk} > {n_classes} classes; showing {n_classes}", file=sys.stderr)
    preds = predictor.predict(args.inputs, topk=args.topk)
    bad = [p for p in preds if p.error]
    shown = [p for p in preds if not p.error] if args.skip_bad else preds
    sys.stdout.write(format_predictions(shown, "json" if args.json else "csv" if args.csv else "text"))
    if bad and args.skip_bad:
        print(f"imgcls: {skipped_line([p.source for p in bad])}", file=sys.stderr)
    elif bad:
        print(f"imgcls: {len(bad)} of {len(preds)} file(s) could not be read; --skip-bad leaves them out",
              file=sys.stderr)
        return 1
    return 0


def _cmd_cam(args: argparse.Namespace) -> int:
    from pathlib import Path

    from imgcls.data import safe_name
    from imgcls.inference import CamOptions, Predictor
    from imgcls.inference.cam import Explainer, write_cams

    opts = _options(args, CamOptions)
    if not opts.out_dir and not Path(args.checkpoint).is_file():
        raise ConfigError(f"{args.checkpoint} is not a file, so there is no folder beside it for the overlays; "
                          "name one with -o DIR")
    explainer = Explainer(Predictor.load(args.checkpoint, device=opts.device), layer=opts.layer)
    out = Path(opts.out_dir) if opts.out_dir else Path(args.checkpoint).parent / "cam"
    bad = 0
    for result, png in write_cams(explainer, args.inputs, out, target=opts.target, topk=opts.topk, npy=opts.save_npy,
                                  force=opts.force):
        pred = result.prediction
        if png is None:
            bad += 1
            print(f"{safe_name(pred.source)}: error: {safe_name(pred.error)}")
            continue
        top = ", ".join(f"{safe_name(lab)} {p:.1%}" for lab, p in zip(pred.labels, pred.probs))
        print(f"{safe_name(pred.source)}: {top} -> {safe_name(png)}")
    if bad:
        print(f"imgcls: {bad} file(s) could not be read", file=sys.stderr)
    return 1 if bad else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from imgcls.serve import ServeOptions
    from imgcls.serve.app import serve

    return serve(args.checkpoint, _options(args, ServeOptions))


def _cmd_export(args: argparse.Namespace) -> int:
    import dataclasses as dc

    from imgcls.export import ExportOptions, export_onnx

    _setup_logging()
    print(export_onnx(args.source, **dc.asdict(_options(args, ExportOptions))).to_text())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from imgcls.demo import run_demo
    from imgcls.runtime import keep_freed_memory

    _setup_logging()
    keep_freed_memory()  # it trains too: this process only
    return run_demo(out_dir=args.output, epochs=args.epochs, model=args.model, progress=args.progress)


def _cmd_cache(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from imgcls.data import safe_name
    from imgcls.data.cache import clear_caches, default_cache_dir, human_size, list_caches

    folder = Path(args.dir) if args.dir else default_cache_dir()
    if args.clear:
        cleared = clear_caches(args.dir)
        for c in cleared.in_use:
            print(f"kept {c.key} ({human_size(c.size)}): in use by process {', '.join(map(str, c.users))}; "
                  "run imgcls cache --clear again once that has finished")
        print(f"removed {len(cleared.removed)} file(s) from {safe_name(folder)}, "
              f"{human_size(sum(size for _, size in cleared.removed))} freed")
        return 0
    caches = list_caches(args.dir)
    for c in caches:
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.created))
        what = f"{c.images:,} images from {safe_name(c.source)}" if c.complete else c.problem
        if c.users:
            what += f", in use by process {', '.join(map(str, c.users))}"
        elif c.problem:
            what += "; imgcls cache --clear removes it"
        print(f"{c.key}  {human_size(c.size):>8}  {built}  {what}")
    total = human_size(sum(c.size for c in caches))
    print(f"{len(caches)} decoded cache(s), {total}, in {safe_name(folder)}"
          + ("; imgcls cache --clear removes them" if caches else ""))
    return 0


MODEL_SOURCE_HELP = ("a checkpoint written by `imgcls train` (best.ckpt), a file written by `imgcls export` "
                     "(model.onnx, run by ONNX Runtime) or a weights name (efficientnet_lite0.in1k: ImageNet classes)")


def build_parser() -> argparse.ArgumentParser:
    from imgcls.engine.config import SECTIONS
    from imgcls.export.options import ExportOptions
    from imgcls.inference.options import CamOptions, EvalOptions, PredictOptions
    from imgcls.serve.options import ServeOptions

    parser = argparse.ArgumentParser(prog="imgcls", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"imgcls {__version__}")
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
    p.add_argument("--model-kw", action=MergeKw, type=parse_model_kw, metavar="KEY=VALUE",
                   help="a builder argument, repeatable: e.g. stride_in_1x1=true (ResNet bottlenecks: the "
                        "paper's v1 stride on the first 1x1 instead of the 3x3), zero_init_residual=true")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("split", help="stratified, reproducible train/val(/test) split of a class-per-folder set",
                       description="Writes DEST/<part>/<class>/ (or DEST/split.json) and DEST/.imgcls-split.json, "
                                   "the list of what it wrote. Byte-identical images are reported (or dropped with "
                                   "--dedup). DEST may not be the source, hold it or lie inside it (symbolic "
                                   "links resolved).")
    p.add_argument("source", help="folder with one sub-folder of images per class (never modified)")
    p.add_argument("-o", "--output", required=True, metavar="DEST",
                   help="destination folder: new or empty, or holding an earlier split (with --force)")
    p.add_argument("--val", type=float, default=0.1, help="fraction of each class for validation (default 0.1)")
    p.add_argument("--test", type=float, default=0.0, help="fraction of each class for test (default 0)")
    p.add_argument("--seed", type=at_least(0), default=0, help="seed of the per-class shuffles (default 0)")
    p.add_argument("--mode", choices=("copy", "link", "index"), default="copy",
                   help="copy files, symlink them, or write only split.json (default copy)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier imgcls split in DEST: delete only the files listed in its "
                        ".imgcls-split.json, then its emptied folders; any other file is kept, and a DEST "
                        "without that list is refused")
    p.add_argument("--dedup", action="store_true",
                   help="drop byte-identical copies before splitting: of copies within one class keep the "
                        "first (by path); of an image found in two or more classes drop every copy, as its "
                        "label is ambiguous (default: only warn)")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("check", help="find unreadable, too small and duplicated images, and split leaks",
                       description="exit code: 0 clean, 1 findings, 2 unusable input")
    p.add_argument("path", help="class-per-folder set, a split folder (train/ val/ test/), or split.json")
    p.add_argument("--min-side", type=int, default=None, metavar="PX",
                   help="flag images whose shorter side is below PX (default: only below 32 px, too small "
                        "to show anything; the default transforms upsample photos smaller than 224 px fine)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every finding (default: the first 5 of each kind)")
    p.add_argument("--json", action="store_true", help="machine-readable report with every finding")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("train", help="train a model on a class-per-folder set (transfer learning or from scratch)",
                       usage="%(prog)s [DATA] [--model NAME] [--epochs N] [options]  (all options: --help)",
                       description="Every option is a field of imgcls.engine.Config; --config replays a run's "
                                   "config.json/yaml and the options given beside it win.")
    p.add_argument("--config", help="config.json or config.yaml of an earlier run")
    for section, klass in SECTIONS.items():
        add_option_flags(p, klass, title=f"{section} options", suppress_defaults=True)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="top-1 (top-5 with more than 5 classes), per-class P/R/F1, confusion matrix "
                                    "and worst mistakes of a checkpoint",
                       description="exit code: 0 done, 2 unusable input (an unreadable image without --skip-bad)")
    p.add_argument("checkpoint", help=MODEL_SOURCE_HELP)
    p.add_argument("data", help="class-per-folder set, a split folder (its val/ part) or split.json")
    add_option_flags(p, EvalOptions)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="top-k classes of images, folders or globs",
                       description="exit code: 0 every file predicted (or skipped with --skip-bad), "
                                   "1 some files unreadable, 2 unusable input")
    p.add_argument("checkpoint", help=MODEL_SOURCE_HELP)
    p.add_argument("inputs", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or globs")
    add_option_flags(p, PredictOptions)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON list: path, error, top (label, index, prob)")
    out.add_argument("--csv", action="store_true", help="CSV rows: path, rank, label, prob, error")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("cam", help="Grad-CAM overlays: where the model looks for its prediction",
                       description="Writes DIR/<image>.cam.png: the centre crop the model sees, the heatmap over "
                                   "it and a caption (predicted class and probability). exit code: 0 done, "
                                   "1 some files unreadable, 2 unusable input")
    p.add_argument("checkpoint", metavar="MODEL", help="a checkpoint written by `imgcls train` (best.ckpt, "
                   "last.ckpt) or a weights name (efficientnet_lite0.in1k)")
    p.add_argument("inputs", nargs="+", metavar="IMAGES", help="image files, folders (searched recursively) or globs")
    add_option_flags(p, CamOptions)
    p.set_defaults(func=_cmd_cam)

    p = sub.add_parser("serve", help="a local web page (and JSON API) that classifies dropped photos, with Grad-CAM",
                       description="Serves the page at http://HOST:PORT/ and POST /predict, GET /model, GET /healthz "
                                   "(schema at /openapi.json) until Ctrl-C. Needs the serve extra: "
                                   "pip install 'imgcls[serve]'")
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP + "; an .onnx file has no Grad-CAM")
    add_option_flags(p, ServeOptions)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("export", help="a checkpoint or weights name as one ONNX file (fp32 or static int8), "
                                      "verified against PyTorch on real photos",
                       description="The file holds its class names and preprocessing: `imgcls predict model.onnx` "
                                   "and `imgcls eval model.onnx DATA` run it with ONNX Runtime. Needs "
                                   "pip install 'imgcls[export]'.")
    p.add_argument("source", help="a checkpoint written by `imgcls train` or a weights name (efficientnet_lite0.in1k)")
    add_option_flags(p, ExportOptions)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", help="transfer learning on the bundled flower photos (EfficientNet-Lite0 ImageNet "
                                    "weights, a new head), evaluate, predict (offline)")
    p.add_argument("-o", "--output", default="runs", help="parent folder of the demo's run folder (default runs)")
    p.add_argument("--epochs", type=at_least(1), default=None, help="default: the demo's tuned setting")
    p.add_argument("--model", default=None,
                   help="train this model from scratch instead (e.g. resnet18; default: EfficientNet-Lite0 transfer)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show progress while training: a bar on a terminal, elsewhere a line at 25/50/75%% of a "
                        "pass that takes more than 10 s (default on)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("cache", help="list or clear the decoded-image caches that `train --cache` writes",
                       description="The caches are in $IMGCLS_HOME/decoded, else "
                                   "$XDG_CACHE_HOME/imgcls/decoded, else ~/.cache/imgcls/decoded.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true",
                      help="each cache: size, when it was built, image count, source folder (the default)")
    what.add_argument("--clear", action="store_true",
                      help="delete imgcls's cache files (<key>.u8, <key>.json, temporaries of stopped builds) "
                           "and say how much that freed; a cache that a running process builds or reads is "
                           "kept (and named), other files in the folder are left alone")
    p.add_argument("--dir", help="the cache folder to list or clear instead of the default one")
    p.set_defaults(func=_cmd_cache)
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
        from imgcls.data.names import safe_name

        print(f"imgcls: error: {safe_name(str(e))}", file=sys.stderr)  # one printable line, whatever a name holds
        return 2
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
