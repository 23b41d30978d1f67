"""The `imgcls` command line: argument parsing only; every command calls the Python API.

One table, COMMANDS: each command's name and help, the function that runs it (cli/commands.py), the
options dataclass its flags come from and its positional arguments. `main` builds the flags of the one
command it was given only, from a dataclass imported then, so `imgcls --help` and every
`imgcls COMMAND --help` start without torch, and `imgcls predict` without the training code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imgcls import __version__
from imgcls.cli import commands
from imgcls.cli.flags import add_option_flags
from imgcls.errors import ImgclsError

Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*names: str, **kw: Any) -> Arg:
    """An argument added as it is (a positional, train's --config): add_argument's parameters."""
    return names, kw


@dataclass(frozen=True)
class Command:
    """One sub-command. `options`: "module:name" of the options dataclass its flags come from, imported
    only when this command's flags are built; a mapping of dataclasses (train's config sections) gives a
    titled group per section whose flags, when given, override --config. `args` come first."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    options: str | None = None
    args: tuple[Arg, ...] = ()
    description: str | None = None
    usage: str | None = None


MODEL_SOURCE_HELP = ("a checkpoint written by `imgcls train` (best.ckpt), a file written by `imgcls export` "
                     "(model.onnx, run by ONNX Runtime) or a weights name (efficientnet_lite0.in1k: ImageNet classes)")
IMAGES_HELP = "image files, folders (searched recursively) or globs"

COMMANDS = (
    Command("models", "list the registered models", commands.run_models,
            args=(arg("pattern", nargs="?", help="shell-style filter, e.g. 'resnet*'"),
                  arg("--task", choices=("classification", "segmentation", "all"), default="classification",
                      help="which models: classifiers (the default), segmentation models, or all"))),
    Command("summary", "per-layer table: output sizes, parameters, FLOPs", commands.run_summary,
            "imgcls.cli.options:SummaryOptions", (arg("model", help="registered model name (see `imgcls models`)"),)),
    Command("split", "stratified, reproducible train/val(/test) split of a class-per-folder set", commands.run_split,
            "imgcls.cli.options:SplitOptions",
            (arg("source", help="folder with one sub-folder of images per class, or a CSV file of labels with "
                                "--images (never modified)"),),
            description="Writes DEST/<part>/<class>/ (or DEST/split.json) and DEST/.imgcls-split.json, the list of "
                        "what it wrote. Byte-identical images are reported (or dropped with --dedup). DEST may not "
                        "be the source, hold it or lie inside it (symbolic links resolved)."),
    Command("check", "find unreadable, too small and duplicated images, and split leaks", commands.run_check,
            "imgcls.cli.options:CheckOptions",
            (arg("path", help="class-per-folder set, a split folder (train/ val/ test/), split.json, or a CSV file "
                              "of labels"),),
            description="exit code: 0 clean, 1 findings, 2 unusable input"),
    Command("train", "train a model on a class-per-folder set (transfer learning or from scratch)", commands.run_train,
            "imgcls.engine.config:SECTIONS", (arg("--config", help="config.json or config.yaml of an earlier run"),),
            description="Every option is a field of imgcls.engine.Config; --config replays a run's config.json/yaml "
                        "and the options given beside it win.",
            usage="%(prog)s [DATA] [--model NAME] [--epochs N] [options]  (all options: --help)"),
    Command("lr-find", "the learning-rate range test: loss against an exponentially growing lr, and a suggested "
                       "lr", commands.run_lr_find, "imgcls.engine.config:LR_FIND_SECTIONS",
            (arg("--config", help="config.json or config.yaml of an earlier run"),),
            description="Takes every flag of `imgcls train` (the run it tests: data, model, weights, transfer, "
                        "optimizer, batch); trains for at most --steps batches from the run's initial weights and "
                        "changes nothing: no run folder, no checkpoint. `imgcls train --lr find` runs it first.",
            usage="%(prog)s [DATA] [--model NAME] [train options] [--steps N] [--plot PNG]  (all options: --help)"),
    Command("eval", "top-1 (top-5 with more than 5 classes), per-class P/R/F1, confusion matrix and worst mistakes "
                    "of a checkpoint", commands.run_eval, "imgcls.inference.options:EvalOptions",
            (arg("checkpoint", help=MODEL_SOURCE_HELP),
             arg("data", help="class-per-folder set, a split folder (its val/ part), split.json, or a CSV file of "
                              "labels")),
            description="exit code: 0 done, 2 unusable input (an unreadable image without --skip-bad)"),
    Command("predict", "top-k classes of images, folders or globs", commands.run_predict,
            "imgcls.inference.options:PredictOptions",
            (arg("checkpoint", help=MODEL_SOURCE_HELP), arg("inputs", nargs="+", metavar="PATH", help=IMAGES_HELP)),
            description="exit code: 0 every file predicted (or skipped with --skip-bad), 1 some files unreadable, "
                        "2 unusable input"),
    Command("cam", "Grad-CAM overlays: where the model looks for its prediction", commands.run_cam,
            "imgcls.inference.options:CamOptions",
            (arg("checkpoint", metavar="MODEL", help="a checkpoint written by `imgcls train` (best.ckpt, last.ckpt) "
                                                     "or a weights name (efficientnet_lite0.in1k)"),
             arg("inputs", nargs="+", metavar="IMAGES", help=IMAGES_HELP)),
            description="Writes DIR/<image>.cam.png: the centre crop the model sees, the heatmap over it and a "
                        "caption (predicted class and probability). exit code: 0 done, 1 some files unreadable, "
                        "2 unusable input"),
    Command("serve", "a local web page (and JSON API) that classifies dropped photos, with Grad-CAM",
            commands.run_serve, "imgcls.serve.options:ServeOptions",
            (arg("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP + "; an .onnx file has no Grad-CAM"),),
            description="Serves the page at http://HOST:PORT/ and POST /predict, GET /model, GET /healthz (schema "
                        "at /openapi.json) until Ctrl-C. Needs the serve extra: pip install 'imgcls[serve]'"),
    Command("export", "a checkpoint or weights name as one ONNX file (fp32 or static int8), verified against "
                      "PyTorch on real photos", commands.run_export, "imgcls.export.options:ExportOptions",
            (arg("source", help="a checkpoint written by `imgcls train` or a weights name (efficientnet_lite0.in1k)"),),
            description="The file holds its class names and preprocessing: `imgcls predict model.onnx` and "
                        "`imgcls eval model.onnx DATA` run it with ONNX Runtime. Needs pip install 'imgcls[export]'."),
    Command("compare", "which network to ship: candidates trained within a time budget on your photos, then "
                       "accuracy, size, MACs and latency (PyTorch, ONNX Runtime fp32 and int8) side by side",
            commands.run_compare, "imgcls.compare.options:CompareOptions",
            (arg("data", help="class-per-folder set (split once, the split kept in --out), a split folder "
                              "(train/ val/) or split.json"),),
            description="Prints the plan with its estimated time first, then trains each candidate into its own "
                        "run folder under --out (eval, predict and export work on it), measures it, and writes "
                        "compare.csv, compare.json and compare.png (top-1 against latency, Pareto front) with a "
                        "recommendation. Ctrl-C keeps what finished; the same command again resumes. exit code: 0 "
                        "done, 2 unusable input, 130 interrupted"),
    Command("demo", "transfer learning on the bundled flower photos (EfficientNet-Lite0 ImageNet weights, a new "
                    "head), evaluate, predict (offline)", commands.run_demo, "imgcls.cli.options:DemoOptions"),
    Command("cache", "list or clear the decoded-image caches that `train --cache` writes", commands.run_cache,
            "imgcls.cli.options:CacheOptions",
            description="The caches are in $IMGCLS_HOME/decoded, else $XDG_CACHE_HOME/imgcls/decoded, else "
                        "~/.cache/imgcls/decoded."),
)


def _add_arguments(p: argparse.ArgumentParser, command: Command) -> None:
    for names, kw in command.args:
        p.add_argument(*names, **kw)
    if command.options is None:
        return
    module, _, name = command.options.partition(":")
    options = getattr(importlib.import_module(module), name)
    if isinstance(options, Mapping):  # only the flags a user gives override a --config file
        for section, klass in options.items():
            add_option_flags(p, klass, title=f"{section} options", suppress_defaults=True)
    else:
        add_option_flags(p, options)


def build_parser(only: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; the flags of the commands in `only` alone when it is given (main)."""
    parser = argparse.ArgumentParser(prog="imgcls", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"imgcls {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description, usage=command.usage)
        if only is None or command.name in only:
            _add_arguments(p, command)
        p.set_defaults(func=command.run, _parser=p)  # errors after parsing show the sub-command's usage
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
    argv = sys.argv[1:] if argv is None else list(argv)
    # the top-level options take no value, so the first word that is not an option names the command
    parser = build_parser(only=[word for word in argv if not word.startswith("-")][:1])
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

