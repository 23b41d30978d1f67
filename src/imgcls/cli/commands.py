"""What each command runs: one function per command, which imports its implementation when called, so
that a command (and `--help`) loads only what it needs: `imgcls predict` never imports the training code,
no `--help` imports torch."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from imgcls.cli.flags import options_of
from imgcls.errors import ConfigError, ImgclsError


def setup_logging() -> None:
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


def run_models(args: argparse.Namespace) -> int:
    from imgcls.models import list_models

    print("\n".join(list_models(args.pattern, task=None if args.task == "all" else args.task)))
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from imgcls.analysis import summarize
    from imgcls.cli.options import SummaryOptions
    from imgcls.models import create_model

    opts = options_of(args, SummaryOptions)
    try:
        model = create_model(args.model, num_classes=opts.num_classes, **opts.model_kw)
    except TypeError as e:
        raise ImgclsError(f"{args.model} does not take the option(s) {opts.model_kw}: {e}") from None
    summary = summarize(model, opts.input, in_chans=opts.in_chans, depth=opts.depth, name=args.model)
    print(summary.to_json() if opts.json else summary.to_text())
    return 0


def run_split(args: argparse.Namespace) -> int:
    from imgcls.cli.options import SplitOptions
    from imgcls.data import make_split, safe_name, write_split
    from imgcls.data.table import CsvColumns

    opts = options_of(args, SplitOptions)
    split = make_split(args.source, val=opts.val, test=opts.test, seed=opts.seed,
                       duplicates="drop" if opts.dedup else "report", csv=CsvColumns(opts.images, opts.path_col,
                                                                                     opts.label_col, opts.label_sep))
    where = write_split(split, opts.output, mode=opts.mode, force=opts.force)
    for line in split.duplicate_warnings():
        print(f"imgcls: warning: {line}", file=sys.stderr)
    print(split.table())
    if split.label_sep is None:
        print(f"wrote {opts.mode} split (seed {opts.seed}, per-class counts rounded down) to {safe_name(where)}")
    else:
        print(f"wrote {opts.mode} split (seed {opts.seed}, photos per label; stratified by each photo's rarest label, "
              f"its counts rounded down) to {safe_name(where)}")
        print(f"train on it with: imgcls train {safe_name(where)} --label-sep '{split.label_sep}'")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from imgcls.cli.options import CheckOptions
    from imgcls.data.check import check_dataset
    from imgcls.data.table import CsvColumns

    opts = options_of(args, CheckOptions)
    report = check_dataset(args.path, min_side=opts.min_side, csv=CsvColumns(opts.images, opts.path_col,
                                                                              opts.label_col, opts.label_sep))
    print(report.to_json() if opts.json else report.to_text(verbose=opts.verbose))
    return 0 if report.clean else 1


def run_train(args: argparse.Namespace) -> int:
    from imgcls.engine import train
    from imgcls.runtime import keep_freed_memory

    config, given = config_of(args)
    setup_logging()
    keep_freed_memory()  # this process only: the step's tensors stop page-faulting (see its docstring)
    result = train(config, given=given - {"resume"})
    return 130 if result.interrupted else 0


def config_of(args: argparse.Namespace) -> tuple[Any, set[str]]:
    """train's and lr-find's Config: --config's, then the flags given (their defaults are suppressed)."""
    from imgcls.engine import Config
    from imgcls.engine.config import field_specs

    config = Config.load(args.config) if args.config else Config()
    given = config.changed_fields() if args.config else set()  # what a --resume must reconcile
    for _, f, _ in field_specs():
        if hasattr(args, f.name):
            config.set(f.name, getattr(args, f.name))
            given.add(f.name)
    return config, given


def run_lr_find(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from imgcls.data import safe_name
    from imgcls.engine.config import LRFindOptions
    from imgcls.engine.lr_find import NO_RESUME, lr_find
    from imgcls.engine.plan import plan

    opts = LRFindOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(LRFindOptions)
                            if hasattr(args, f.name)})
    config, given = config_of(args)
    if config.train.resume:
        raise ConfigError(NO_RESUME)  # before the checkpoint is read
    if config.optim.lr == "find":
        config.optim.lr = None  # the test does not need a rate
    setup_logging()
    result = lr_find(plan(config, given=given), start_lr=opts.start_lr, end_lr=opts.end_lr, steps=opts.find_steps,
                     progress=config.train.progress)
    png = result.plot(Path(opts.plot) if opts.plot else Path(config.train.out_dir) / "lr_find.png")
    if opts.json:
        print(json.dumps(result.to_dict() | {"plot": safe_name(png)}, indent=2))
    else:
        print(result.to_text())
        if result.suggestion is not None:
            print(f"imgcls train ... --lr {result.suggestion:.3g}   (or: imgcls train ... --lr find)")
        print(f"loss against lr: {safe_name(png)}")
    return 0 if result.suggestion is not None else 1


def run_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from imgcls.data import safe_name
    from imgcls.inference import EvalOptions, evaluate

    setup_logging()
    report, out = evaluate(args.checkpoint, args.data, **dataclasses.asdict(options_of(args, EvalOptions)))
    print(report.to_text())
    task = getattr(report, "task", "classification")
    if task == "segmentation":
        worst = " and worst.png (the photos with the lowest mean IoU)" if report.worst else ""
        print(f"report.txt, report.json, confusion_matrix.csv, confusion_matrix.png{worst} in {safe_name(out)}")
        return 0
    if task != "classification":  # multi-label
        print(f"report.txt, report.json, ap.png in {safe_name(out)}")
        return 0
    cams = " and wrong_cam.png (Grad-CAM of the worst mistakes)" if args.cam and report.top1_correct < report.n else ""
    print(f"report.txt, report.json, confusion_matrix.csv, confusion_matrix.png, reliability.png{cams} in "
          f"{safe_name(out)}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from imgcls.inference import Predictor, PredictOptions
    from imgcls.inference.predictor import format_predictions
    from imgcls.inference.source import open_source
    from imgcls.runtime import resolve_device

    opts = options_of(args, PredictOptions)
    source = open_source(args.checkpoint, device=resolve_device(opts.device), threads=opts.threads)
    if source.task == "segmentation":
        return _predict_masks(source, args, opts)
    if opts.out_dir:
        raise ConfigError(f"--output: {args.checkpoint} is a classifier, whose predictions go to stdout; drop it")
    predictor = Predictor.load(source, device=opts.device, batch_size=opts.batch_size, draft=opts.draft,
                               threads=opts.threads, abstain=opts.abstain, tta=opts.tta)
    n_classes = len(predictor.classes)
    if opts.topk > n_classes and not predictor.multilabel:
        print(f"imgcls: --topk {opts.topk} > {n_classes} classes; showing {n_classes}", file=sys.stderr)
    preds = predictor.predict(args.inputs, topk=opts.topk)
    bad = [p for p in preds if p.error]
    shown = [p for p in preds if not p.error] if opts.skip_bad else preds
    sys.stdout.write(format_predictions(shown, "json" if opts.json else "csv" if opts.csv else "text"))
    return _unreadable_exit([p.source for p in bad], len(preds), skip_bad=opts.skip_bad)


def _predict_masks(source, args: argparse.Namespace, opts) -> int:
    """`imgcls predict` of a segmentation checkpoint (inference.seg_predict): masks and overlays in a folder."""
    from pathlib import Path

    from imgcls.inference.predictor import expand_inputs
    from imgcls.inference.seg_predict import MaskPredictor, format_masks

    if opts.csv or opts.draft:
        raise ConfigError(f"{'--csv' if opts.csv else '--draft'}: {args.checkpoint} is a segmentation model: its "
                          "masks go to files (--json lists them with the class shares); drop it")
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    out = Path(opts.out_dir) if opts.out_dir else Path(args.checkpoint).parent / "masks"
    results = MaskPredictor(source, device=opts.device).predict(expand_inputs(args.inputs), out)
    bad = [r for r in results if r.error]
    sys.stdout.write(format_masks([r for r in results if not r.error] if opts.skip_bad else results,
                                  as_json=opts.json))
    return _unreadable_exit([r.source for r in bad], len(results), skip_bad=opts.skip_bad)


def _unreadable_exit(bad: list[str], total: int, *, skip_bad: bool) -> int:
    """predict's exit code and its stderr line about unreadable inputs: skipped (exit 0) or not (exit 1)."""
    from imgcls.reports import skipped_line

    if bad and skip_bad:
        print(f"imgcls: {skipped_line(bad)}", file=sys.stderr)
    elif bad:
        print(f"imgcls: {len(bad)} of {total} file(s) could not be read; --skip-bad leaves them out", file=sys.stderr)
        return 1
    return 0


def run_cam(args: argparse.Namespace) -> int:
    from pathlib import Path

    from imgcls.data import safe_name
    from imgcls.inference import CamOptions, Predictor
    from imgcls.inference.cam import Explainer, write_cams

    opts = options_of(args, CamOptions)
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
        if pred.multilabel:  # every label above its threshold, each explained unless --class names one
            top = f"{top or 'no label above its threshold'} (Grad-CAM of {safe_name(result.target)})"
        print(f"{safe_name(pred.source)}: {top} -> {safe_name(png)}")
    if bad:
        print(f"imgcls: {bad} file(s) could not be read", file=sys.stderr)
    return 1 if bad else 0


def run_serve(args: argparse.Namespace) -> int:
    from imgcls.serve.app import serve
    from imgcls.serve.options import ServeOptions

    return serve(args.checkpoint, options_of(args, ServeOptions))


def run_export(args: argparse.Namespace) -> int:
    import dataclasses

    from imgcls.export import ExportOptions, export_onnx

    setup_logging()
    print(export_onnx(args.source, **dataclasses.asdict(options_of(args, ExportOptions))).to_text())
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from imgcls.compare import CompareOptions, compare
    from imgcls.runtime import keep_freed_memory

    opts = options_of(args, CompareOptions)
    setup_logging()
    keep_freed_memory()  # it trains too: this process only
    result = compare(args.data, opts)
    print(result.to_text())
    return 130 if result.interrupted else 0


def run_demo(args: argparse.Namespace) -> int:
    from imgcls.cli.options import DemoOptions
    from imgcls.demo import run_demo as demo
    from imgcls.runtime import keep_freed_memory

    opts = options_of(args, DemoOptions)
    setup_logging()
    keep_freed_memory()  # it trains too: this process only
    return demo(out_dir=opts.output, epochs=opts.epochs, model=opts.model, progress=opts.progress)


def run_cache(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from imgcls.cli.options import CacheOptions
    from imgcls.data import safe_name
    from imgcls.data.cache import clear_caches, default_cache_dir, human_size, list_caches

    opts = options_of(args, CacheOptions)
    folder = Path(opts.dir) if opts.dir else default_cache_dir()
    if opts.clear:
        cleared = clear_caches(opts.dir)
        for c in cleared.in_use:
            print(f"kept {c.key} ({human_size(c.size)}): in use by process {', '.join(map(str, c.users))}; "
                  "run imgcls cache --clear again once that has finished")
        print(f"removed {len(cleared.removed)} file(s) from {safe_name(folder)}, "
              f"{human_size(sum(size for _, size in cleared.removed))} freed")
        return 0
    caches = list_caches(opts.dir)
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
