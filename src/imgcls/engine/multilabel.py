"""A multi-label run's planning (engine.plan calls it for a CSV read with --label-sep): the settings that
only make sense for one class per photo refused in one line each, --pos-weight computed from the train
part's label counts and stated in the log, and the MultiLabel task (tasks/multilabel.py) built."""
from __future__ import annotations

import math
from typing import Any

from imgcls.errors import ConfigError, DataError
from imgcls.tasks.multilabel import MultiLabel


def multilabel_task(cfg: Any, data: Any, notes: list[str]) -> MultiLabel:
    """The task of a multi-label run (`cfg` an engine Config, `data` its build.Datasets); `notes` gets the
    positive weights' line."""
    if cfg.data.sampler == "balanced":
        raise ConfigError("--sampler balanced draws photos by their one class; a multi-label photo has several: "
                          "weigh rare labels with --pos-weight balanced instead")
    if cfg.optim.class_weights != "none":
        raise ConfigError(f"--class-weights {cfg.optim.class_weights} weighs one class per photo; for several labels "
                          "per photo use --pos-weight balanced (or sqrt)")
    if cfg.train.metric not in ("top1", "map"):  # top1: the default, never given for multi-label
        raise ConfigError(f"--metric {cfg.train.metric}: a multi-label run picks best.ckpt by macro mAP "
                          "(--metric map); drop --metric")
    cfg.train.metric = "map"
    counts = positives(data.train.samples, len(data.classes))
    absent = [c for c, n in zip(data.classes, counts) if n == 0]
    if absent:
        raise DataError(f"{data.source}: label {absent[0]!r} has no photo in the train part; add photos of it to "
                        "train or remove it")
    weights = pos_weights(counts, len(data.train.samples), cfg.optim.pos_weight)
    if weights is not None:
        how = "negatives/positives" if cfg.optim.pos_weight == "balanced" else "sqrt(negatives/positives)"
        notes.append(f"positive weights ({how} in the train part, --pos-weight): " + ", ".join(
            f"{c} {w:.2f} ({n} photos)" for c, w, n in zip(data.classes, weights, counts)))
    return MultiLabel(data.classes, pos_weight=weights)


def positives(samples: list[tuple[Any, tuple[int, ...]]], num_classes: int) -> list[int]:
    """Photos showing each class, of (path, class indices) samples."""
    counts = [0] * num_classes
    for _, labels in samples:
        for c in labels:
            counts[c] += 1
    return counts


def pos_weights(counts: list[int], n: int, rule: str) -> list[float] | None:
    """BCE's weight of each class's positives: `balanced` (n - n_c) / n_c, so a class's positives weigh as much
    as its negatives; `sqrt` its square root; None for `none`. A class on every photo gets 1."""
    if rule == "none":
        return None
    ratios = [(n - c) / c if 0 < c < n else 1.0 for c in counts]
    return [math.sqrt(r) for r in ratios] if rule == "sqrt" else ratios
