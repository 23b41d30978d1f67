"""What `--resume` means: which settings may change, which data it must find, which folder it continues.

A resumed run continues the experiment its checkpoint describes. Settings that only say how or
how long to run it may change, and every change is logged:

    --epochs N         the new total (more than the epochs already done); the LR schedule is rebuilt
                       for the new length and continues from the current step (a cosine that had
                       decayed to 0 at the old end rises to where the longer curve is at this step)
    --workers, --device, --progress, --tensorboard, --save-every, --patience, --dist-timeout
    the number of processes  under torchrun: the checkpoint's global batch is split over the new world
                       (engine.distributed.resume_batch_size)
    DATA, --val-data, --images   a moved copy of the same data: its classes and files (relative paths)
                       must be the checkpoint's
    --name, --out-dir  continue in a new run folder instead of the checkpoint's own

Anything else would change the experiment (model, transfer, classes, optimizer, lr, batch size,
input size, augmentation, seed ...) and is refused with one line naming the flag.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from imgcls.engine.config import Config, flag_name
from imgcls.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger("imgcls")

RESUMABLE = ("epochs", "workers", "device", "progress", "tensorboard", "save_every", "patience", "data", "val_data",
             "images", "name", "out_dir", "dist_timeout", "feature_backend")


def resumed_config(saved: Config, given: Config, names: set[str], checkpoint: str | Path
                   ) -> tuple[Config, dict[str, tuple[Any, Any]]]:
    """The checkpoint's config with the allowed changes among `names` (the settings the user gave)
    applied, and those changes (name -> (old, new)); a ConfigError naming the first setting that may
    not change."""
    config = Config.from_dict(saved.to_dict(), source=str(checkpoint))
    config.train.resume = str(checkpoint)
    changed = {}
    for name in sorted(names - {"resume"}):
        new, old = given.get(name), saved.get(name)
        if name in ("data", "val_data", "images") and new:
            new = str(Path(new).resolve())
        if new == old:
            continue
        if name not in RESUMABLE:
            raise ConfigError(f"{flag_name(name)} {new!r} cannot change on --resume (the run has {old!r}): it would "
                              "change the experiment; drop the flag, or start a new run (with --weights "
                              f"{checkpoint} to begin from these weights)")
        config.set(name, new)
        changed[name] = (old, new)
    config.validate()
    return config, changed


def check_epochs(config: Config, done: int, epoch_step: int) -> None:
    """The new total must leave something to train."""
    total = config.train.epochs
    if total < done or (total == done and epoch_step == 0):
        raise ConfigError(f"--epochs {total}: the checkpoint has finished {done} epoch(s) already; "
                          f"pass --epochs N with N > {done} to train further")


def log_changes(changed: dict[str, tuple[Any, Any]]) -> None:
    for name, (old, new) in changed.items():
        log.info("resume: %s %s -> %s", flag_name(name), old, new)


def log_schedule_change(old_epochs: int, new_epochs: int, kind: str, lr: float) -> None:
    if old_epochs != new_epochs:
        log.info("resume: the %s learning-rate schedule is rebuilt for %d epochs instead of %d and continues from "
                 "the current step at lr %.3g", kind, new_epochs, old_epochs, lr)


# -- the data a run saw -----------------------------------------------------------------------

def data_files(train_samples: list[tuple[Path, int]], val_samples: list[tuple[Path, int]]) -> dict[str, Any]:
    """Every train/val file as a path relative to the files' common folder, so that a copy of the data
    moved elsewhere matches and a changed one does not."""
    every = [p for p, _ in train_samples + val_samples]
    root = Path(os.path.commonpath([str(p.absolute()) for p in every])) if every else Path()
    if len(every) == 1:
        root = root.parent

    def rel(samples: list[tuple[Path, int]]) -> list[str]:
        return [os.fsencode(p.absolute().relative_to(root)).decode("utf-8", "backslashreplace") for p, _ in samples]

    return {"root": str(root), "train": rel(train_samples), "val": rel(val_samples)}


def check_data(state: dict[str, Any], classes: list[str], files: dict[str, Any], checkpoint: str | Path) -> None:
    """The data a resume finds must be the checkpoint's: same classes, same files."""
    if list(state["classes"]) != list(classes):
        raise DataError(f"the data has classes {classes}, but {checkpoint} was trained on {state['classes']}; "
                        "resume with the same data (give its new path if it moved)")
    saved = state.get("data_files")
    if saved is None:  # checkpoints of imgcls 0.1.0 did not record their files
        log.warning("resume: %s does not list its files; cannot check that the data is unchanged", checkpoint)
        return
    for part in ("train", "val"):
        before, now = saved[part], files[part]
        if before != now:
            missing = sorted(set(before) - set(now))[:1]
            extra = sorted(set(now) - set(before))[:1]
            what = (f"missing {missing[0]}" if missing else f"new {extra[0]}" if extra else "a different order")
            raise DataError(f"the {part} files differ from those {checkpoint} was trained on ({len(now)} now, "
                            f"{len(before)} then; first difference: {what}); resume with the same data, or start "
                            "a new run")


def check_threads(state: dict[str, Any], checkpoint: str | Path) -> None:
    threads = state.get("threads")
    if threads is not None and threads != torch.get_num_threads():
        log.warning("resume: this process computes with %d thread(s), %s was written with %d: the result will "
                    "not be bit-exact (set OMP_NUM_THREADS=%d for an exact resume)", torch.get_num_threads(),
                    checkpoint, threads, threads)


def check_not_older(checkpoint: Path, state: dict[str, Any], run_dir: Path) -> None:
    """Refuse to continue in a folder whose last.ckpt is newer than the checkpoint resumed from: the
    resumed run would overwrite it and its metrics.csv."""
    from imgcls.engine.checkpoint import load_checkpoint

    last = run_dir / "last.ckpt"
    if not last.is_file() or last.resolve() == checkpoint.resolve():
        return
    try:
        newer = load_checkpoint(last)
    except CheckpointError:
        return
    if newer.get("global_step", 0) > state.get("global_step", 0):
        raise ConfigError(f"{checkpoint} (epoch {state['epoch']}) is older than {last} (epoch {newer['epoch']}); "
                          f"continuing in {run_dir} would overwrite it and metrics.csv: resume from {last}, or "
                          f"continue from {checkpoint.name} in a new run folder with --name NEW_NAME")
