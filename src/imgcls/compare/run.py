"""`imgcls compare DATA`: plan, train, measure, rank.

Reads top to bottom: the candidates and the budget (one-line errors for a bad name or duration), the
comparison folder (--out: new or empty, or an earlier comparison of the same data, which resumes), the
data and its one split (written as OUT/split/split.json when DATA is one tree, so every candidate and
every later `imgcls eval` sees the same val photos), the plan with its estimates, then per candidate:
its normal run folder OUT/<weights>-<size>/ (engine.train: a new head on cached features, or from
scratch), the measurements (compare.measure), and compare.json and compare.csv rewritten atomically.
At the end (or at Ctrl-C) the table, the plot with the Pareto front and the recommendation.

A rerun with the same --out skips the finished candidates, resumes one whose training was interrupted
from its last.ckpt, and starts again one that never reached a checkpoint.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imgcls.compare.candidates import Candidate, default_candidates, parse_budget, parse_models
from imgcls.compare.measure import measure_run
from imgcls.compare.options import CompareOptions
from imgcls.compare.plan import Plan, Speed, Step, decode_speed, fit_budget, forward_speed
from imgcls.compare.results import BACKEND_NAMES, FORMAT, pareto_front, points, recommend, table, write_csv, write_json
from imgcls.errors import ConfigError
from imgcls.progress import clock

log = logging.getLogger("imgcls")

STATE = "compare.json"
SLACK = 1.1  # a candidate still starts when its estimate overruns what is left of the budget by up to 10%


@dataclass
class CompareResult:
    out: Path
    rows: list[dict[str, Any]]
    plan: Plan
    recommendation: str
    interrupted: bool = False
    files: list[Path] = field(default_factory=list)

    def to_text(self) -> str:
        lines = [table(self.rows)] if self.rows else ["no candidate finished"]
        lines.append(f"recommended: {self.recommendation}")
        lines.append("wrote " + ", ".join(str(f) for f in self.files))
        if self.interrupted:
            lines.append("interrupted: what finished is kept; run the same command again to resume")
        return "\n".join(lines)


def compare(data: str | Path, options: CompareOptions | None = None, **kw: Any) -> CompareResult:
    """Compare the candidates of `options` (or `kw`: CompareOptions fields) on `data`; see the module docstring."""
    opts = options or CompareOptions(**kw)
    start = time.perf_counter()
    budget = parse_budget(opts.budget)
    candidates = parse_models(opts.models, opts.input_size) if opts.models else default_candidates(opts.input_size)
    out = Path(opts.out)
    state = open_state(out)
    source, val, n_train = comparison_data(Path(data), out, opts, state)
    done = state["candidates"]
    pending = [c for c in candidates if done.get(c.slug, {}).get("status") != "done"]
    for c in candidates:
        if c not in pending:
            log.info("compare: %s finished in an earlier run (%s): skipped", c.label, out / c.slug)
    plan = make_plan(pending, len(state["data"]["classes"]), val, n_train, budget, progress=opts.progress)
    log.info("compare: plan for %d train / %d val images, budget %s:\n%s", n_train, len(val), clock(budget),
             plan.text(time.perf_counter() - start))
    state["plan"] = [{"candidate": s.candidate.label, "epochs": s.epochs, "estimate_s": round(s.seconds, 1)}
                     for s in plan.steps]
    write_json(state, out / STATE)
    interrupted = False
    queue, ran, estimated, real = list(plan.steps), [], 0.0, 0.0
    try:
        while queue:
            step = queue.pop(0)
            spent = time.perf_counter() - start
            if step.seconds > SLACK * (budget - spent):
                log.info("compare: dropped %s: ~%s, over the %s left of the budget", step.candidate.label,
                         clock(step.seconds), clock(max(budget - spent, 0)))
                continue
            tag = f"[{len(ran) + 1}/{len(ran) + 1 + len(queue)}]"
            row = run_candidate(step, tag, out, source, val, n_train, opts,
                                spent=lambda: f"{clock(time.perf_counter() - start)} of {clock(budget)} spent")
            if row is None:
                interrupted = True
                break
            done[step.candidate.slug] = row
            write_json(state, out / STATE)
            write_csv(finished(state), out / "compare.csv")
            ran.append(step)
            estimated, real = estimated + step.seconds, real + row["seconds"]
            scale = min(4.0, max(0.25, real / max(estimated, 1e-9)))  # one odd candidate must not swing it all
            queue, plan = replan(queue, plan, ran, scale, start, budget, n_train, len(val))
            state["plan"] = [{"candidate": s.candidate.label, "epochs": s.epochs, "estimate_s": round(s.seconds, 1)}
                             for s in plan.steps]
    except KeyboardInterrupt:
        interrupted = True
    return finish(out, state, plan, interrupted)


def replan(queue: list[Step], plan: Plan, ran: list[Step], scale: float, start: float, budget: float,
           n_train: int, n_val: int) -> tuple[list[Step], Plan]:
    """The candidates not run yet, the dropped ones included, fitted again to what is left of the budget
    with every estimate scaled by how the finished ones' estimates held (real / estimated time): an
    estimate that was twice too high dropped candidates that fit. Logs the new plan when it changed."""
    rest = [s.candidate for s in queue] + [c for c, _ in plan.dropped]
    if not rest:
        return queue, plan
    speeds = {s.candidate.slug: s.speed for s in queue} | plan.speeds
    new = fit_budget(rest, speeds, n_train, n_val, budget, spent=time.perf_counter() - start, scale=scale)
    if [s.candidate for s in new.steps] != [s.candidate for s in queue]:
        log.info("compare: re-planned with the estimates x %.2f (the real time of what ran against its "
                 "estimate):\n%s", scale, new.text(time.perf_counter() - start))
    return list(new.steps), replace(new, steps=tuple(ran) + new.steps, speeds=speeds)


def open_state(out: Path) -> dict[str, Any]:
    """compare.json of an earlier comparison in `out`, or a new state; a folder holding anything else is refused."""
    import json

    path = out / STATE
    if path.is_file():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--out {out}: {STATE} cannot be read ({e}); choose another --out, or delete the "
                              "folder to start over") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ConfigError(f"--out {out}: {STATE} was not written by imgcls compare; choose another --out")
        state.setdefault("candidates", {})
        return state
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and holds no imgcls comparison ({STATE}); choose a new or empty folder")
    return {"format": FORMAT, "version": 1, "candidates": {}}


def fingerprint(parts: Any) -> dict[str, Any]:
    """What identifies the data of a comparison: its classes, and its train and val photos (class folder
    and name, so a moved copy of the same photos is the same data)."""
    digest = hashlib.sha256()
    for name in ("train", "val"):
        for p, y in parts.parts[name]:
            digest.update(f"{name}\t{y}\t{Path(p).parent.name}/{Path(p).name}\n".encode())
    return {"classes": list(parts.classes), "train": len(parts.parts["train"]), "val": len(parts.parts["val"]),
            "sha256": digest.hexdigest()}


def comparison_data(data: Path, out: Path, opts: CompareOptions, state: dict[str, Any]
                    ) -> tuple[Path, list[tuple[Path, int]], int]:
    """(what every candidate trains on, the val photos with their class index, the train count). A tree
    is split once (opts.val_fraction, seed 0) and the split kept as OUT/split/split.json; a split folder
    or index is used as it is. An --out holding a comparison of other data is refused."""
    from imgcls.data import open_parts, write_split

    parts = open_parts(data, val_fraction=opts.val_fraction, split_seed=0)
    if parts.task != "classification":
        raise ConfigError(f"{data}: {parts.task} data; imgcls compare ranks classifiers")
    if "train" not in parts.parts or "val" not in parts.parts:
        raise ConfigError(f"{data}: no train and val part to compare on; pass a class-per-folder tree or a split "
                          "with train/ and val/")
    seen = fingerprint(parts)
    if "data" in state and {k: v for k, v in state["data"].items() if k != "path"} != seen:
        raise ConfigError(f"--out {out}: holds a comparison of other data ({state['data'].get('path')}: "
                          f"{len(state['data']['classes'])} classes, {state['data']['train']} train / "
                          f"{state['data']['val']} val photos); choose another --out for {data}")
    state["data"] = {"path": str(data.resolve()), **seen}
    out.mkdir(parents=True, exist_ok=True)
    source = data
    if parts.split is not None:
        source = out / "split"
        if not (source / "split.json").is_file():
            write_split(parts.split, source, mode="index")
        source = source / "split.json"
    val = [(Path(p), int(y)) for p, y in parts.parts["val"]]
    return source, val, len(parts.parts["train"])


def make_plan(pending: list[Candidate], classes: int, val: list[tuple[Path, int]], n_train: int, budget: float,
              *, progress: bool) -> Plan:
    """Each pending candidate's forward speed measured here, the photos' decoding too, fitted to the budget."""
    if not pending:
        return fit_budget([], {}, n_train, len(val), budget)
    photos = [p for p, _ in val]
    resize = max(c.resize for c in pending)
    decode = decode_speed(photos, resize, min(c.input_size for c in pending))
    if progress:
        log.info("compare: measuring the forward speed of %d candidate(s) on this machine", len(pending))
    speeds = {c.slug: Speed(forward_speed(c.model, c.input_size, classes), decode) for c in pending}
    return replace(fit_budget(pending, speeds, n_train, len(val), budget), speeds=speeds)


def candidate_config(step: Step, source: Path, out: Path, opts: CompareOptions) -> tuple[Any, set[str]]:
    """The run's Config and the fields it sets (train's `given`): a new head on cached features with
    AdamW at 1e-3, or from scratch with the demo's recipe (imgcls.demo)."""
    from imgcls.engine import Config

    c, cfg = step.candidate, Config()
    cfg.data.data = str(source)
    cfg.data.batch_size = 32
    cfg.optim.optimizer = "adamw"
    cfg.model.model = c.model
    given = {"data", "batch_size", "optimizer", "model", "epochs", "seed", "out_dir", "name", "progress", "lr"}
    if c.weights:
        cfg.model.weights, cfg.model.transfer = c.weights, "head"
        cfg.optim.lr = 1e-3
        given |= {"weights", "transfer"}
    else:
        cfg.data.scale = [0.25, 1.0]
        cfg.optim.lr, cfg.optim.warmup_epochs, cfg.optim.label_smoothing = 2e-3, 1, 0.1
        given |= {"scale", "warmup_epochs", "label_smoothing"}
    # the candidate's sizes: its weights' own crop and resize unless --input-size (engine.build takes their
    # mean, std and interpolation)
    cfg.data.input_size, cfg.data.resize_size = c.input_size, c.resize
    given |= {"input_size", "resize_size"}
    cfg.train.epochs, cfg.train.seed = step.epochs, opts.seed
    cfg.train.out_dir, cfg.train.name, cfg.train.progress = str(out), c.slug, opts.progress
    return cfg, given


def train_candidate(step: Step, out: Path, source: Path, opts: CompareOptions, tag: str) -> bool:
    """Train the candidate into OUT/<slug>: resumed from its last.ckpt when an earlier comparison was
    interrupted in training, skipped when that run finished, else (again) from the start. False when
    interrupted."""
    from imgcls.engine import Config, train

    run_dir = out / step.candidate.slug
    if (run_dir / "report.json").is_file() and (run_dir / "best.ckpt").is_file():
        log.info("compare: %s %s: trained in an earlier run (%s)", tag, step.candidate.label, run_dir)
        return True
    last = run_dir / "last.ckpt"
    if last.is_file() and not _finished_epochs(last):
        log.info("compare: %s %s: resuming its interrupted training from %s", tag, step.candidate.label, last)
        cfg = Config()
        cfg.train.resume, cfg.train.progress = str(last), opts.progress
        return not train(cfg, given={"resume", "progress"}).interrupted
    if run_dir.exists():  # stopped before its first checkpoint, or in the final report: nothing to resume
        log.info("compare: %s %s: its earlier start left nothing to resume from; starting it again", tag,
                 step.candidate.label)
        shutil.rmtree(run_dir)
    cfg, given = candidate_config(step, source, out, opts)
    return not train(cfg, given=given).interrupted


def _finished_epochs(last: Path) -> bool:
    """Whether last.ckpt holds every epoch of its run (stopped in the final report: --resume has nothing to do)."""
    from imgcls.engine.checkpoint import load_checkpoint

    state = load_checkpoint(last)
    return state.get("epoch_step", 0) == 0 and state.get("epoch", 0) >= state["config"]["train"]["epochs"]


def run_candidate(step: Step, tag: str, out: Path, source: Path, val: list[tuple[Path, int]], n_train: int,
                  opts: CompareOptions, *, spent: Any) -> dict[str, Any] | None:
    """Train and measure one candidate: its row for compare.json, or None when interrupted in training."""
    c, t0 = step.candidate, time.perf_counter()
    log.info("compare: %s %s: training (%s, %d epochs, %d px); %s", tag, c.label, c.how, step.epochs, c.input_size,
             spent())
    if not train_candidate(step, out, source, opts, tag):
        return None
    trained = time.perf_counter() - t0
    log.info("compare: %s %s: exporting (ONNX fp32, int8) and timing; %s", tag, c.label, spent())
    row = measure_run(out / c.slug, source, val, n_train)
    seconds = time.perf_counter() - t0
    row |= {"status": "done", "candidate": c.label, "model": c.model, "weights": c.weights, "how": c.how,
            "input_size": c.input_size, "epochs": step.epochs, "run_dir": c.slug, "train_seconds": round(trained, 1),
            "seconds": round(seconds, 1), "estimate_s": round(step.seconds, 1)}
    log.info("compare: %s %s done in %s (estimated %s): val top-1 %.1f%%; %s", tag, c.label, clock(seconds),
             clock(step.seconds), 100 * row["top1"], spent())
    return row


def finished(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in state["candidates"].values() if r.get("status") == "done"]


def finish(out: Path, state: dict[str, Any], plan: Plan, interrupted: bool) -> CompareResult:
    """The outputs of every finished candidate: compare.json (with the Pareto front and the recommendation),
    compare.csv, compare.png."""
    from imgcls.reports.plots import plot_accuracy_latency

    rows = finished(state)
    pts = points(rows)
    front = pareto_front(pts)
    pick, text = recommend(pts)
    state["pareto"] = [p.name for p in front]
    state["recommendation"] = text
    files = [write_json(state, out / STATE), write_csv(rows, out / "compare.csv")]
    if pts:
        files.append(plot_accuracy_latency([(p.candidate, BACKEND_NAMES[p.backend], p.top1, p.latency_ms) for p in pts],
                                           [(p.top1, p.latency_ms) for p in front], out / "compare.png",
                                           title=f"{len(rows)} candidate(s) on {Path(state['data']['path']).name}",
                                           chosen=(pick.top1, pick.latency_ms) if pick else None))
    return CompareResult(out, rows, plan, text, interrupted, files)
