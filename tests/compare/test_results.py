"""compare.results: the Pareto front, the recommendation's words, and the files, from plain rows."""
from __future__ import annotations

import csv
import json

import pytest

from imgcls.compare.results import Point, pareto_front, points, recommend, table, write_csv, write_json


def row(name: str, top1: float, ms: dict, int8_top1: float | None = None, note: str | None = None) -> dict:
    """A finished candidate's row as compare.json keeps it; `ms`: backend -> batch-1 latency."""
    latency = {k: {"1": ms.get(k), "32": None if ms.get(k) is None else 20 * ms[k]}
               for k in ("eager", "ort_fp32", "ort_int8")}
    return {"candidate": name, "how": "new head on cached features", "input_size": 224, "epochs": 30, "top1": top1,
            "macro_f1": top1 - 0.01, "params": 3_400_000, "macs": 400_000_000, "ckpt_bytes": 14 << 20,
            "onnx_bytes": None if note else 13 << 20, "int8_bytes": None if note else 4 << 20,
            "top1_by_backend": {"eager": top1, "ort_fp32": None if note else top1, "ort_int8": int8_top1},
            "int8_agreement": None if note else 0.98, "latency_ms": latency, "train_seconds": 42.0,
            "run_dir": name, "onnx_note": note, "status": "done"}


def test_the_front_keeps_only_the_undominated_points_fastest_first():
    pts = [Point("a", "eager", 0.95, 30), Point("a", "ort_int8", 0.94, 8), Point("b", "eager", 0.93, 40),
           Point("b", "ort_fp32", 0.96, 50), Point("c", "eager", 0.94, 8)]
    # b eager is beaten by a eager on both axes; c eager ties a int8 exactly: neither dominates the other
    assert [(p.candidate, p.backend) for p in pareto_front(pts)] == [
        ("a", "ort_int8"), ("c", "eager"), ("a", "eager"), ("b", "ort_fp32")]


def test_the_recommendation_is_the_fastest_within_a_point_and_says_why():
    rows = [row("efficientnet_lite0.in1k", 0.951, {"eager": 20.0, "ort_fp32": 12.0, "ort_int8": 8.0}, 0.951),
            row("resnet18.tv_in1k", 0.939, {"eager": 24.0, "ort_fp32": 20.0, "ort_int8": 14.0}, 0.935)]
    pick, text = recommend(points(rows))
    assert (pick.candidate, pick.backend) == ("efficientnet_lite0.in1k", "ort_int8")
    assert text == ("efficientnet_lite0.in1k ORT int8: 95.1% at 8.0 ms per photo (the fastest within 1 point of the "
                    "best val top-1); resnet18.tv_in1k ORT fp32 is 1.2 points lower and 2.5x slower")


def test_a_more_accurate_but_slower_rival_is_named_as_such():
    pts = [Point("small", "ort_int8", 0.945, 5.0), Point("big", "eager", 0.952, 60.0)]
    pick, text = recommend(pts)
    assert pick.candidate == "small"
    assert text.endswith("big PyTorch is 0.7 points higher but 12x slower")


def test_beyond_the_tolerance_accuracy_wins():
    pick, text = recommend([Point("fast", "ort_int8", 0.90, 2.0), Point("good", "ort_fp32", 0.95, 20.0)])
    assert pick.candidate == "good"
    assert text.endswith("fast ORT int8 is 5.0 points lower but 10x faster")


def test_one_candidate_and_none():
    pick, text = recommend([Point("only", "eager", 0.9, 10.0)])
    assert pick.candidate == "only" and text.endswith("(the only candidate measured)")
    assert recommend([]) == (None, "no candidate finished: nothing to recommend")


def test_csv_json_and_table_hold_every_row_with_n_a_for_what_was_not_measured(tmp_path):
    rows = [row("efficientnet_lite0.in1k", 0.951, {"eager": 20.0, "ort_fp32": 12.0, "ort_int8": 8.0}, 0.95),
            row("resnet18 (scratch)", 0.80, {"eager": 30.0},
                note="onnxruntime not installed: pip install 'imgcls[export]'")]
    with open(write_csv(rows, tmp_path / "compare.csv"), newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["candidate"] for r in got] == ["efficientnet_lite0.in1k", "resnet18 (scratch)"]
    assert got[0]["ort_int8_b1_ms"] == "8.0" and got[0]["ort_int8_b32_ms"] == "160.0"
    assert got[1]["ort_int8_b1_ms"] == "n/a" and got[1]["int8_agreement"] == "n/a"
    assert got[1]["onnx_note"].startswith("onnxruntime not installed")
    write_json({"rows": rows}, tmp_path / "compare.json")
    assert json.loads((tmp_path / "compare.json").read_text())["rows"][1]["latency_ms"]["ort_int8"]["1"] is None
    text = table(rows)
    assert "n/a: onnxruntime not installed" in text
    assert text.splitlines()[3].split()[-8:] == ["n/a", "/", "n/a", "n/a", "/", "n/a", "n/a", "n/a"]
    assert "20.0 / 12.5" in text.splitlines()[2]  # batch 1 ms / ms per image at batch 32


@pytest.mark.parametrize("ms", [None, 3.0])
def test_points_leave_out_what_was_not_measured(ms):
    r = row("a", 0.9, {"eager": 10.0, "ort_int8": ms}, None if ms is None else 0.89)
    assert [p.backend for p in points([r])] == (["eager"] if ms is None else ["eager", "ort_int8"])


def test_float32_top1_of_onnx_runtime_ties_pytorch_so_the_slower_one_leaves_the_front():
    # flower_photos: 345 of 364 right is 0.9478021978 in PyTorch and 0.9478021860 from ONNX Runtime (float32)
    r = row("a", 345 / 364, {"eager": 32.0, "ort_fp32": 6.6})
    r["val_images"], r["top1_by_backend"]["ort_fp32"] = 364, 0.9478021860122681
    front = pareto_front(points([r]))
    assert [p.backend for p in front] == ["ort_fp32"] and front[0].top1 == 345 / 364
