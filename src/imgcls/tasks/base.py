"""The task seam: what differs between classification, segmentation and multi-label training, in one
object per task. engine/ trains any task through it; a task imports nothing from engine/, inference/,
export/ or serve/ (tests/test_layers.py).

A task answers, for one run (it is built with the run's class names):

    transforms(data, ...)          the (train, eval) transforms, paired for image and target where the
                                   target is spatial (a mask gets the image's crop and flip)
    outputs(net, x)                the network's output on a batch, train and validation alike
                                   (segmentation: the batch padded to whole stride-32 cells and the
                                   maps cropped back, models.seg_parts.padded_forward)
    criterion(label_smoothing)     the loss module (an ignore index where the target has a void label)
    loss(output, target, ...)      the step's loss from the network's output (auxiliary heads included)
                                   and the main logits
    hits(logits, target)           the train-accuracy numerator of a batch (mixed targets count by weight)
    metrics(logits, targets, ...)  the validation numbers of one pass, keyed as metrics.csv's columns
    score                          the column that picks best.ckpt and drives early stopping
    columns(ema=)                  metrics.csv's columns, in order
    epoch_line(row, epochs)        the log line of a finished epoch
    report(logits, targets, ...)   the evaluation files a finished run leaves (report, plots)
    calibrate(logits, targets)     (optional) what best.ckpt records of the val outputs' calibration: for
                                   classification the temperature and abstain thresholds, for multi-label each
                                   class's threshold (checkpoint.Calibration); `calibration_line(record)`
                                   (optional) says it in the log
    record()                       what a checkpoint stores about the task ({"task": name, ...}: a
                                   segmentation run's void value and palette)

A task whose validation outputs are too big to keep (segmentation: a score per pixel) says
`streamed = True` and answers, in place of metrics and report:

    tally(output, target)          one batch's summable numbers (a float64 tensor: its confusion matrix,
                                   loss sum, ...); the engine adds them over batches and DDP ranks
    tally_metrics(tally, prefix=)  the validation numbers of the summed tally
    tally_report(tally, ...)       the evaluation files of the best weights' summed tally

What a task gets for free from the engine: resume (bit-exact), DDP, EMA, checkpoints, progress,
TensorBoard, feature caching and the transfer policies (docs/architecture.md has the table).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from imgcls.data import Preprocessing


class Task(Protocol):
    name: str
    classes: list[str]
    score: str

    @staticmethod
    def transforms(data: Any, *, train_crop: int, preprocessing: Preprocessing) -> tuple[Any, Any]: ...

    def outputs(self, net: nn.Module, x: torch.Tensor) -> Any: ...

    def criterion(self, *, label_smoothing: float = 0.0) -> nn.Module: ...

    def loss(self, output: Any, target: torch.Tensor, criterion: nn.Module, *, aux_weight: float
             ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def hits(self, logits: torch.Tensor, target: torch.Tensor) -> float: ...

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor, *, prefix: str = "") -> dict[str, float]: ...

    def columns(self, *, ema: bool = False) -> list[str]: ...

    def epoch_line(self, row: dict[str, Any], *, epochs: int) -> str: ...

    def report(self, logits: torch.Tensor, targets: torch.Tensor, *, paths: Sequence[str], run_dir: Path,
               history: Sequence[dict]) -> None: ...

    def calibrate(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any] | None: ...
    def record(self) -> dict[str, Any]: ...


class StreamedTask(Task, Protocol):
    """A task validated batch by batch (`streamed = True`): no logits are kept."""

    streamed: bool

    def tally(self, output: Any, target: torch.Tensor) -> torch.Tensor: ...

    def tally_metrics(self, tally: torch.Tensor, *, prefix: str = "") -> dict[str, float]: ...

    def tally_report(self, tally: torch.Tensor, *, run_dir: Path, history: Sequence[dict], title: str = "") -> None: ...
