"""`imgcls compare`'s bad inputs (docs/errors.md, "Comparing models"): one line, exit 2, before any training."""
from __future__ import annotations

import pytest

from imgcls.compare import run
from tests.conftest import error_line, make_tiny_folder, run_cli


@pytest.fixture
def data(tmp_path):
    return make_tiny_folder(tmp_path / "data", per_class=4)


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "resnet81"], "imgcls: error: --models resnet81: not a model or weights name; did you mean resnet18"),
    (["--models", "efficientnet_lite0.in1k,fcn_resnet50.tv_coco_voc"],
     "imgcls: error: --models fcn_resnet50.tv_coco_voc: weights of the segmentation model fcn_resnet50; compare ranks "
     "classifiers"),
    (["--models", ","], "imgcls: error: --models ',': name at least one model"),
    (["--budget", "ten"],
     "imgcls: error: --budget ten: not a duration; write it with a unit, e.g. 90s, 10m, 1h or 1h30m"),
    (["--budget", "10"], "imgcls: error: --budget 10: not a duration"),
    (["--budget", "3s"], "imgcls: error: --budget 3s: too short to train anything"),
])
def test_bad_flags(tmp_path, capsys, data, argv, message):
    assert run_cli(["compare", data, "-o", tmp_path / "cmp", *argv]) == 2
    assert error_line(capsys, only=True).startswith(message)
    assert not (tmp_path / "cmp").exists()


def test_input_size_out_of_range_is_refused_while_parsing(tmp_path, capsys, data):
    assert run_cli(["compare", data, "-o", tmp_path / "cmp", "--input-size", "8"]) == 2
    assert "argument --input-size: 8: must be >= 16" in capsys.readouterr().err


def test_an_out_folder_of_other_files_or_other_data(tmp_path, capsys, monkeypatch):
    data = make_tiny_folder(tmp_path / "data", per_class=10)  # 9 train + 1 val photos per class
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    assert run_cli(["compare", data, "-o", notes, "--models", "efficientnet_lite0.in1k"]) == 2
    assert error_line(capsys, only=True) == (f"imgcls: error: --out {notes}: exists and holds no imgcls comparison "
                                             "(compare.json); choose a new or empty folder")
    # a comparison of `data` (training and measuring stubbed), then other photos into the same folder
    monkeypatch.setattr(run, "train_candidate", lambda *a: False)
    monkeypatch.setattr(run, "forward_speed", lambda *a, **k: 0.001)
    out = tmp_path / "cmp"
    argv = ["compare", data, "-o", out, "--models", "efficientnet_lite0.in1k", "--budget", "1h"]
    assert run_cli(argv) == 130  # stopped in training by the stub
    other = make_tiny_folder(tmp_path / "other", per_class=11)
    capsys.readouterr()
    assert run_cli(["compare", other, "-o", out, "--models", "efficientnet_lite0.in1k"]) == 2
    line = error_line(capsys, only=True)
    assert line.startswith(f"imgcls: error: --out {out}: holds a comparison of other data (") and \
        line.endswith(f"3 classes, 27 train / 3 val photos); choose another --out for {other}")
