"""The comparison's plan: each candidate's training recipe and its estimated time, fitted to the budget.

The estimate is built from what this machine measures in a few seconds, not from a table: one
candidate's forward pass per image at its input size (a batch of 8, after a warm-up) and the decoding
of a few of the user's photos. A run is then counted in images through the network: a new head on
cached features runs the frozen network once per image; from scratch, each epoch runs every train
image forward and backward (about 3 forward passes) and every val image forward. Measuring adds the
two ONNX exports (a fixed allowance each), int8 calibration and agreement, and the latency rounds.
It is an estimate: the plan says so, and each candidate's line reports the time it really took.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgcls.compare.candidates import Candidate
from imgcls.progress import clock

HEAD_EPOCHS = 30  # epochs of the new head on cached features: seconds, whatever the network
SCRATCH_EPOCHS = 20  # from scratch at 112 px (the demo's recipe), shortened to fit the budget
MIN_SCRATCH_EPOCHS = 5  # fewer says nothing about the network: dropped instead
EXPORT_SECONDS = 10.0  # one ONNX export with its graph optimisation (measured 4-12 s on a 2-core CPU)
CALIB_IMAGES = 128  # int8 calibration images (export's --calib-images)
CALIB_TRIES = 4  # calibration methods x weight precisions export may try (minmax, percentile x 8-, 7-bit)
LATENCY_ROUNDS = 5  # interleaved timing rounds per batch size (the median is kept)
LATENCY_MIN_TIME = 0.2  # s: each backend runs at least this long per round


@dataclass(frozen=True)
class Speed:
    """Seconds per image on this machine: the candidate's forward pass and decoding a photo."""

    forward: float
    decode: float


@dataclass(frozen=True)
class Step:
    """One candidate as planned: its recipe, its estimate, and why it was shortened (if it was)."""

    candidate: Candidate
    epochs: int
    seconds: float
    speed: Speed
    note: str = ""

    def line(self) -> str:
        c = self.candidate
        note = f"; {self.note}" if self.note else ""
        return (f"{c.label:<28} {c.how}, {self.epochs} epochs, {c.input_size} px: ~{clock(self.seconds)} "
                f"(forward {1000 * self.speed.forward:.1f} ms/image){note}")


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    dropped: tuple[tuple[Candidate, str], ...]
    budget: float
    speeds: dict[str, Speed] = field(default_factory=dict, compare=False)  # every candidate's, dropped ones too

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def text(self, spent: float = 0.0) -> str:
        if not self.steps and not self.dropped:
            return "  nothing left to run: every candidate finished in an earlier run"
        lines = [f"  {s.line()}" for s in self.steps]
        lines += [f"  dropped {c.label}: {why}" for c, why in self.dropped]
        lines.append(f"  estimated {clock(self.seconds)} of the {clock(self.budget)} budget"
                     + (f" ({clock(spent)} already spent)" if spent else "")
                     + " (an estimate from the forward speed measured just now)")
        return "\n".join(lines)


def measure_cost(n_train: int, n_val: int, speed: Speed) -> float:
    """Seconds to export (fp32, int8), calibrate, check int8 on val and time three backends at batch 1 and 32."""
    f, d = speed.forward, speed.decode
    exports = 2 * EXPORT_SECONDS + 2 * 32 * (d + f)
    calib = min(CALIB_IMAGES, n_train) * (d + CALIB_TRIES * 2 * f) + CALIB_TRIES * n_val * (d + f)
    val_pass = n_val * (d + 2 * f)
    latency = 3 * LATENCY_ROUNDS * (max(LATENCY_MIN_TIME, f) + max(LATENCY_MIN_TIME, 32 * f)) + 3 * 33 * f
    return exports + calib + val_pass + latency


def train_cost(c: Candidate, epochs: int, n_train: int, n_val: int, speed: Speed) -> float:
    """Seconds of the training run: the data check (every photo decoded once), then the epochs."""
    f, d = speed.forward, speed.decode
    check = (n_train + n_val) * d
    if c.weights:  # the frozen network once per image, then the head's epochs on the cached features
        return check + (n_train + n_val) * (d + f) + 0.05 * epochs * (n_train + n_val) / 32
    return check + epochs * (n_train * (d + 3 * f) + n_val * (d + f)) + n_val * (d + f)


def estimate(c: Candidate, epochs: int, n_train: int, n_val: int, speed: Speed) -> float:
    return train_cost(c, epochs, n_train, n_val, speed) + measure_cost(n_train, n_val, speed)


_estimate = estimate


def fit_budget(candidates: list[Candidate], speeds: dict[str, Speed], n_train: int, n_val: int, budget: float,
               *, spent: float = 0.0, scale: float = 1.0) -> Plan:
    """The candidates that fit `budget - spent`, in order (the optional ones last): a from-scratch run is
    shortened to the epochs that fit (at least MIN_SCRATCH_EPOCHS), anything else that does not fit is
    dropped, each with the reason. `scale` multiplies every estimate: the ratio of the real to the estimated
    time of the candidates that already ran (compare re-plans with it after each one)."""
    left = budget - spent

    def estimate(c: Candidate, epochs: int, n_train: int, n_val: int, speed: Speed) -> float:
        return scale * _estimate(c, epochs, n_train, n_val, speed)

    steps: list[Step] = []
    dropped: list[tuple[Candidate, str]] = []
    for c in [c for c in candidates if not c.optional] + [c for c in candidates if c.optional]:
        speed = speeds[c.slug]
        epochs = HEAD_EPOCHS if c.weights else SCRATCH_EPOCHS
        step = Step(c, epochs, estimate(c, epochs, n_train, n_val, speed), speed)
        if step.seconds > left and not c.weights:
            per_epoch = estimate(c, 2, n_train, n_val, speed) - estimate(c, 1, n_train, n_val, speed)
            fits = int((left - estimate(c, 0, n_train, n_val, speed)) // max(per_epoch, 1e-9))
            if fits >= MIN_SCRATCH_EPOCHS:
                step = replace(step, epochs=fits, seconds=estimate(c, fits, n_train, n_val, speed),
                               note=f"shortened from {epochs} epochs to fit the budget")
        if step.seconds > left:
            why = (f"~{clock(step.seconds)} for {step.epochs} epochs" if not c.weights or step.epochs == epochs
                   else f"~{clock(step.seconds)}")
            dropped.append((c, f"{why}, over the {clock(max(left, 0))} left of the budget"
                               + ("" if c.weights else f" (needs at least {MIN_SCRATCH_EPOCHS} epochs)")))
            continue
        steps.append(step)
        left -= step.seconds
    return Plan(tuple(steps), tuple(dropped), budget)


def forward_speed(model: str, input_size: int, num_classes: int, *, batch: int = 8) -> float:
    """Seconds per image of `model`'s eval forward pass at `input_size` on this machine: randomly initialised
    (speed does not depend on the weights), one warm-up batch, then the best of two."""
    import torch

    from imgcls.models import create_model

    net = create_model(model, num_classes=num_classes).eval()
    x = torch.randn(batch, 3, input_size, input_size)
    best = float("inf")
    with torch.inference_mode():
        net(x)
        for _ in range(2):
            start = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - start)
    return best / batch


def decode_speed(paths: list[Path], resize: int, crop: int) -> float:
    """Seconds to decode one of these photos and cut its eval crop (the mean over up to 12 of them)."""
    from imgcls.data import Preprocessing, load_array
    from imgcls.errors import DataError
    from imgcls.imagenet import IMAGENET_MEAN, IMAGENET_STD

    transform = Preprocessing(resize, crop, IMAGENET_MEAN, IMAGENET_STD, "bilinear").eval_transform()
    sample = paths[:: max(1, len(paths) // 12)][:12]
    start, n = time.perf_counter(), 0
    for p in sample:
        try:
            transform(load_array(p))
            n += 1
        except DataError:
            continue
    return (time.perf_counter() - start) / max(n, 1)
