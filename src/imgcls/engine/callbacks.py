"""The side effects of a run, each in one small object the loop calls by name: the log of epochs
(metrics.csv, TensorBoard, the log line), the checkpoints (last, best, every N steps, on Ctrl-C)
and early stopping. Under DistributedDataParallel only rank 0 gets the writing ones.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imgcls.engine.checkpoint import save_checkpoint
from imgcls.engine.distributed import termination_held
from imgcls.reports import MetricsLog
from imgcls.tasks import Task

log = logging.getLogger("imgcls")


class EpochLog:
    """metrics.csv (rewritten from the checkpoint's history on resume: rows after it never happened),
    TensorBoard when installed and wanted, and one log line per epoch."""

    def __init__(self, run_dir: Path, task: Task, history: list[dict], *, epochs: int, tensorboard: bool,
                 fresh: bool, ema: bool = False) -> None:
        path = run_dir / "metrics.csv"
        if not fresh:
            path.unlink(missing_ok=True)
        self.task = task
        self.columns = task.columns(ema=ema)
        self.metrics = MetricsLog(path, self.columns)
        for row in history:
            self.metrics.append({k: v for k, v in row.items() if k in self.columns})
        self.epochs = epochs
        self.writer = _tensorboard(run_dir) if tensorboard else None

    def record(self, row: dict[str, Any], *, improved: bool) -> None:
        self.metrics.append(row)
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.writer.add_scalar(k, v, row["epoch"])
        log.info("%s%s", self.task.epoch_line(row, epochs=self.epochs), "  *best*" if improved else "")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))


class Checkpoints:
    """last.ckpt at every epoch end, every `save_every` steps inside an epoch and on Ctrl-C; best.ckpt
    when the epoch's val top-1 is the best so far."""

    def __init__(self, run_dir: Path, *, save_every: int, steps_per_epoch: int) -> None:
        self.last, self.best = run_dir / "last.ckpt", run_dir / "best.ckpt"
        self.save_every, self.steps_per_epoch = save_every, steps_per_epoch

    def step(self, state_fn, *, global_step: int, epoch_step: int) -> None:
        if self.save_every and global_step % self.save_every == 0 and epoch_step < self.steps_per_epoch:
            self._save(state_fn(), self.last)

    def epoch_end(self, state: dict, *, improved: bool) -> None:
        self._save(state, self.last)
        if improved:
            self._save(state, self.best)

    def interrupted(self, state: dict) -> None:
        self._save(state, self.last)
        log.warning("interrupted; continue with: imgcls train --resume %s", self.last)

    @staticmethod
    def _save(state: dict, path: Path) -> None:
        with termination_held():  # under torchrun a SIGTERM waits for the file to be whole
            save_checkpoint(state, path)


class Quiet:
    """What the ranks other than 0 hold in place of EpochLog and Checkpoints under DDP: every call does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class EarlyStopping:
    """The best score so far (the column `key`: val_top1, or --metric's column, ema_ with an EMA) and, with
    `patience`, how many more epochs without a better one. The checkpoint's record keeps the best epoch's
    top-1 as `top1` (what serve's model card shows) beside the score and its column."""

    def __init__(self, patience: int | None, *, key: str = "val_top1", best: dict[str, Any] | None = None,
                 patience_left: int | None = None, fresh: bool = True) -> None:
        self.patience, self.key = patience, key
        best = best or {}
        self.best_top1, self.best_epoch = best.get("top1", -1.0), best.get("epoch", 0)
        self.best_score = best.get("score", self.best_top1)  # a checkpoint before --metric: top-1 chose
        self.patience_left = (None if patience is None else
                              patience if fresh or patience_left is None else patience_left)

    def update(self, row: dict[str, Any]) -> bool:
        """Take an epoch's row; True when it is the best so far."""
        if row[self.key] > self.best_score:
            top1 = self.key[:self.key.index("val_")] + "val_top1"  # the EMA's when the EMA chooses
            self.best_score, self.best_epoch = row[self.key], row["epoch"]
            self.best_top1 = row.get(top1, row[self.key])  # a task without top-1 (multi-label): its score
            self.patience_left = self.patience
            return True
        if self.patience_left is not None:
            self.patience_left -= 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience_left is not None and self.patience_left <= 0

    def state(self) -> dict[str, Any]:
        return {"best": {"top1": self.best_top1, "epoch": self.best_epoch, "score": self.best_score,
                         "metric": self.key}, "patience_left": self.patience_left}
