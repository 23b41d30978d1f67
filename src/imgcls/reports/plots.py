"""The pictures a run leaves behind: the training curves, the confusion matrix, the reliability diagram,
the learning-rate finder's curve, and `imgcls compare`'s accuracy against latency.

Figures are built with matplotlib's object API on an Agg canvas, never through pyplot: nothing enters
pyplot's global figure list (so nothing leaks over hundreds of epochs), the user's backend is left
alone, and it works on a headless server. matplotlib is imported only when a plot is drawn.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgcls.errors import ConfigError
from imgcls.paths import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_CURVE_PANELS = (("loss", ("train_loss", "val_loss")),
                 ("accuracy", ("train_acc", "val_top1", "val_top5", "ema_val_top1", "val_balanced_acc", "val_macro_f1",
                               "val_miou", "val_pixel_acc", "ema_val_miou", "val_map", "val_map_micro", "val_f1",
                               "ema_val_map")),
                 ("learning rate", ("lr",)))
_MAX_CELL_TEXT = 30  # classes; beyond this the numbers in the cells are unreadable


def _figure(width: float, height: float, *, layout: str | None = None) -> Figure:
    try:
        import matplotlib  # noqa: F401  (a missing package fails here, not halfway through a plot)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ConfigError("drawing plots needs matplotlib, which is not installed: pip install matplotlib") from e
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Draw to a temporary file beside `path`, then rename it: a viewer never opens half a PNG."""
    path = Path(path)
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png"))
    finally:
        fig.clear()  # the figure was never registered with pyplot: dropping it frees everything


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def plot_curves(rows: Sequence[Mapping[str, object]], path: str | Path) -> Path:
    """Loss, accuracy and learning rate against epoch, as three panels of one PNG (rows of metrics.csv).

    Columns that are missing, empty or NaN are left out of their panel; a panel with nothing to
    draw says so. Without an `epoch` column the rows are numbered from 1.
    """
    fig = _figure(15, 4.2)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.92, wspace=0.22)  # fixed: cheaper than a layout engine
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    xs = [_num(r.get("epoch")) for r in rows]
    if not all(math.isfinite(x) for x in xs):
        xs = [float(i + 1) for i in range(len(rows))]
    for ax, (title, keys) in zip(fig.subplots(1, 3), _CURVE_PANELS):
        ys_drawn: list[float] = []
        for key in keys:
            points = [(x, y) for x, y in zip(xs, (_num(r.get(key)) for r in rows)) if math.isfinite(y)]
            if points:
                px, py = zip(*points)
                ax.plot(px, py, marker="o" if len(points) <= 30 else None, markersize=4, label=key)
                ys_drawn += py
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(set(xs)) == 1:  # one epoch: a single tick, not 0.945 ... 1.050
            ax.set_xticks(xs[:1])
            ax.set_xlim(xs[0] - 0.5, xs[0] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not ys_drawn:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
            continue
        if len(keys) > 1:
            ax.legend()
        if title == "accuracy" and max(ys_drawn) <= 1:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if title == "learning rate" and min(ys_drawn) > 0 and max(ys_drawn) / min(ys_drawn) > 10:
            ax.set_yscale("log")  # step and cosine schedules span decades; a zero end-value stays linear
    return _save(fig, path, dpi=100)


def plot_class_bars(values: Mapping[str, float], path: str | Path, *, title: str, marks: Sequence[float] = ()
                    ) -> Path:
    """One horizontal bar per class (a multi-label run's per-class AP: ap.png), the worst at the top; `marks`
    (one per class, e.g. F1 at its threshold) as dots on the bars."""
    names, ys = list(values), [float(v) for v in values.values()]
    fig = _figure(7, 1.2 + 0.3 * len(names), layout="constrained")
    ax = fig.subplots()
    order = sorted(range(len(names)), key=lambda i: ys[i])
    ax.barh(range(len(names)), [ys[i] for i in order], color="#4c72b0", label=title.split(" ")[0])
    if marks:
        ax.plot([marks[i] for i in order], range(len(names)), "o", color="#dd8452", label="F1 at threshold")
        ax.legend(loc="lower right")
    ax.set_yticks(range(len(names)), [names[i] for i in order])
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path, dpi=100)


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], path: str | Path, *,
                          normalize: bool = True) -> Path:
    """Heatmap of a [true, predicted] count matrix, titled with the overall accuracy.

    With `normalize` the colours are row-normalised (each true class sums to 100%, so a small class is
    as visible as a large one) and each cell shows the percentage over the count; without it, colours
    and cells are counts. Cell text is drawn up to 30 classes; past that only colours, smaller labels.
    """
    cm = np.asarray(cm)
    n = len(classes)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix is {list(cm.shape)}, want [{n}, {n}] for {n} class names")
    total, correct = int(cm.sum()), int(np.trace(cm))
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros(cm.shape), where=row_sums > 0)
    shown = share if normalize else cm
    vmax = 1.0 if normalize else max(1, int(cm.max(initial=0)))

    side = min(4.5 + (0.4 if n <= _MAX_CELL_TEXT else 0.2) * n, 40)
    fig = _figure(side + 1.2, side, layout="constrained")  # fits the class names, however long
    from matplotlib.ticker import PercentFormatter

    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8, format=PercentFormatter(1.0) if normalize else None)
    label_size = 9 if n <= _MAX_CELL_TEXT else 6
    ax.set_xticks(range(n), list(classes), rotation=45 if n <= _MAX_CELL_TEXT else 90, ha="right",
                  rotation_mode="anchor", fontsize=label_size)
    ax.set_yticks(range(n), list(classes), fontsize=label_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = correct / total if total else 0.0
    ax.set_title(f"accuracy {accuracy:.2%} ({correct}/{total})")
    if n <= _MAX_CELL_TEXT:
        cell_size = 8 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                if cm[i, j] == 0 and i != j:
                    continue  # empty off-diagonal cells stay blank: the mistakes stand out
                text = f"{share[i, j]:.0%}\n{cm[i, j]}" if normalize else f"{cm[i, j]}"
                ax.text(j, i, text, ha="center", va="center", fontsize=cell_size,
                        color="white" if shown[i, j] > 0.5 * vmax else "black")
    return _save(fig, path, dpi=100)


def plot_reliability_bins(curves: Sequence[tuple[str, object]], path: str | Path) -> Path:
    """Reliability diagram (Guo et al. 2017): per confidence bin, accuracy against mean confidence, one
    panel per (title, reports.calibration.ReliabilityBins); the diagonal is perfect calibration, the bars
    below it overconfidence. Each panel's title gives its expected calibration error."""
    fig = _figure(5 * len(curves), 4.6)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.9, wspace=0.25)
    for ax, (title, bins) in zip(np.atleast_1d(fig.subplots(1, len(curves))), curves):
        edges = np.asarray(bins.edges)
        width = np.diff(edges)
        used = np.asarray(bins.counts) > 0
        ax.bar(edges[:-1][used], np.asarray(bins.accuracy)[used], width=width[used], align="edge",
               edgecolor="black", color="#4c72b0", label="accuracy")
        gap = np.asarray(bins.confidence)[used] - np.asarray(bins.accuracy)[used]
        ax.bar(edges[:-1][used], gap, bottom=np.asarray(bins.accuracy)[used], width=width[used], align="edge",
               edgecolor="#c44e52", color="#c44e52", alpha=0.3, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: ECE {bins.ece:.2%}")
        ax.legend(loc="upper left")
    return _save(fig, path, dpi=100)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float], path: str | Path, *,
                 suggestion: float | None = None, title: str = "") -> Path:
    """The learning-rate range test: loss (raw, faint, and smoothed) against the learning rate on a log
    axis, the suggested rate marked."""
    fig = _figure(6.5, 4.2)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    ax = fig.subplots()
    if lrs:
        ax.plot(lrs, losses, color="#9fb6d8", linewidth=1, label="loss")
        ax.plot(lrs, smoothed, color="#2f5d9e", linewidth=2, label="smoothed loss")
        ax.set_xscale("log")
        finite = [v for v in smoothed if math.isfinite(v)]
        if finite:  # the divergence at the end would flatten the interesting part
            ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 3 * finite[0] + 1e-9) * 1.05)
    if suggestion:
        ax.axvline(suggestion, color="#c44e52", linestyle="--", label=f"suggested {suggestion:.3g}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path, dpi=100)


def plot_accuracy_latency(points: Sequence[tuple[str, str, float, float]], front: Sequence[tuple[float, float]],
                          path: str | Path, *, title: str = "", chosen: tuple[float, float] | None = None) -> Path:
    """Val top-1 against latency at batch 1 (log axis): one (candidate, backend, top-1, ms) point each, a colour
    per candidate and a marker per backend; the Pareto front (its (top-1, ms) points) ringed and joined as a
    step line, the recommended point ringed larger."""
    fig = _figure(8.5, 4.8)
    fig.subplots_adjust(left=0.09, right=0.68, bottom=0.12, top=0.9)
    ax = fig.subplots()
    colours: dict[str, str] = {}
    markers: dict[str, str] = {}
    palette = ["#4c72b0", "#55a868", "#dd8452", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
    for candidate, backend, top1, ms in points:
        colour = colours.setdefault(candidate, palette[len(colours) % len(palette)])
        marker = markers.setdefault(backend, "osD^v<>"[len(markers) % 7])
        ax.scatter([ms], [100 * top1], marker=marker, color=colour, s=40, zorder=3)
    for candidate, colour in colours.items():
        ax.scatter([], [], marker="o", color=colour, label=candidate)
    for backend, marker in markers.items():
        ax.scatter([], [], marker=marker, color="grey", label=backend)
    if front:
        ordered = sorted(front, key=lambda p: p[1])
        ax.step([ms for _, ms in ordered], [100 * t for t, _ in ordered], where="post", color="#c44e52",
                linewidth=1, zorder=2)
        ax.scatter([ms for _, ms in ordered], [100 * t for t, _ in ordered], s=90, facecolors="none",
                   edgecolors="#c44e52", zorder=4, label="Pareto front")
    if chosen is not None:
        ax.scatter([chosen[1]], [100 * chosen[0]], s=260, facecolors="none", edgecolors="black", linewidths=1.5,
                   zorder=5, label="recommended")
    if points:
        from matplotlib.ticker import LogLocator, ScalarFormatter

        ax.set_xscale("log")  # plain numbers at 1-2-5 steps: "3x10^1 4x10^1" labels ran into each other
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter("")
        tops = [100 * p[2] for p in points]
        ax.set_ylim(min(tops) - 2, min(max(tops) + 2, 100.5))
    ax.set_xlabel("latency at batch 1 (ms, this machine)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if points:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path, dpi=100)
