import math
import sys

import numpy as np
import pytest

from imgcls.errors import ConfigError
from imgcls.reports import plot_confusion_matrix, plot_curves

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG


def _rows(n):
    return [{"epoch": e, "train_loss": 2 / e, "val_loss": 2.2 / e, "train_acc": 1 - 0.5 / e,
             "val_top1": 1 - 0.6 / e, "val_top5": 1.0, "lr": 0.1 * 0.5 ** e} for e in range(1, n + 1)]


def test_curves(tmp_path):
    out = plot_curves(_rows(12), tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png" and _is_png(out)


@pytest.mark.parametrize("rows", [
    _rows(1),  # a one-epoch run
    [],  # nothing logged yet
    [{"epoch": 1, "train_loss": 1.0, "val_loss": math.nan, "lr": ""},  # missing and NaN values,
     {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "train_acc": 0.6}],  # no val_top1/val_top5
    [{"train_loss": 1.0}, {"train_loss": 0.8}],  # no epoch column
], ids=["one-epoch", "empty", "gaps", "no-epoch"])
def test_curves_degenerate(tmp_path, rows):
    assert _is_png(plot_curves(rows, tmp_path / "c.png"))


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    cm = np.array([[50, 3, 0], [4, 40, 6], [0, 0, 0]])  # the last class has no sample
    assert _is_png(plot_confusion_matrix(cm, ["daisy", "dandelion", "roses"], tmp_path / "cm.png",
                                         normalize=normalize))


def test_confusion_matrix_40_classes(tmp_path):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, (40, 40)) + np.diag(rng.integers(20, 60, 40))
    assert _is_png(plot_confusion_matrix(cm, [f"class_{i:02d}" for i in range(40)], tmp_path / "cm.png"))


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"want \[2, 2\]"):
        plot_confusion_matrix(np.zeros((3, 3)), ["a", "b"], "unused.png")


def test_no_figure_leak(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    before = plt.get_fignums()
    plot_curves(_rows(3), tmp_path / "c.png")
    plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "cm.png")
    assert plt.get_fignums() == before


def test_missing_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    for call in (lambda: plot_curves(_rows(2), tmp_path / "c.png"),
                 lambda: plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.png")):
        with pytest.raises(ConfigError, match="pip install matplotlib"):
            call()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("top5, lines", [(1.0, ["train_acc", "val_top1", "val_top5"]),
                                         ("", ["train_acc", "val_top1"]), (math.nan, ["train_acc", "val_top1"])])
def test_curves_draw_top5_only_when_logged(tmp_path, monkeypatch, top5, lines):
    """A run with 5 classes or fewer logs no top-5 (it would always be 100%): no line for it."""
    import imgcls.reports.plots as plots

    drawn = {}
    save = plots._save

    def keep_labels(fig, path, dpi):
        drawn.update({ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in fig.axes})
        return save(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", keep_labels)
    plot_curves([{**row, "val_top5": top5} for row in _rows(3)], tmp_path / "c.png")
    assert drawn["accuracy"] == lines


@pytest.mark.parametrize("n", [0, 1, 6])
def test_accuracy_latency(tmp_path, n):
    from imgcls.reports.plots import plot_accuracy_latency

    backends = ("PyTorch", "ORT fp32", "ORT int8")
    pts = [(f"model{i // 3}", backends[i % 3], 0.9 + 0.01 * i, 40.0 / (1 + i)) for i in range(n)]
    front = [(t, ms) for _, _, t, ms in pts[-2:]]
    out = plot_accuracy_latency(pts, front, tmp_path / "compare.png", title="flowers",
                                chosen=(pts[-1][2], pts[-1][3]) if pts else None)
    assert _is_png(out) and not list(tmp_path.glob(".*"))  # written whole, no temporary left
