"""The comparison's results: the table (terminal, compare.csv, compare.json), the accuracy-vs-latency points
with their Pareto front, and the recommendation with its reason. Pure functions of the rows (plain dicts,
as compare.json keeps them), so a resumed comparison rebuilds all of it from the file."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcls.paths import write_text_atomic

FORMAT = "imgcls-compare"
BACKEND_NAMES = {"eager": "PyTorch", "ort_fp32": "ORT fp32", "ort_int8": "ORT int8"}
TOLERANCE = 0.01  # the recommendation: the fastest option within 1 point of the best top-1
CSV_COLUMNS = ("candidate", "how", "input_size", "epochs", "val_top1", "val_macro_f1", "params", "macs", "ckpt_bytes",
               "onnx_bytes", "int8_bytes", "eager_b1_ms", "eager_b32_ms", "ort_fp32_b1_ms", "ort_fp32_b32_ms",
               "ort_int8_b1_ms", "ort_int8_b32_ms",
               "ort_fp32_top1", "ort_int8_top1", "int8_agreement", "train_seconds", "run_dir", "onnx_note")


@dataclass(frozen=True)
class Point:
    """One way to ship a candidate: its network under one backend, its val top-1, its batch-1 latency."""

    candidate: str
    backend: str
    top1: float
    latency_ms: float

    @property
    def name(self) -> str:
        return f"{self.candidate} {BACKEND_NAMES[self.backend]}"


def points(rows: list[dict[str, Any]]) -> list[Point]:
    """Every (candidate, backend) measured: top-1 of that backend on val, latency at batch 1. Top-1 is put
    back on the grid of whole photos (ONNX Runtime's comes as float32: 0.94780219 for PyTorch's
    0.94780220, which would make two equally accurate points differ)."""
    out = []
    for r in rows:
        n = r.get("val_images") or 0
        for backend in BACKEND_NAMES:
            top1, ms = r["top1_by_backend"].get(backend), r["latency_ms"].get(backend, {}).get("1")
            if top1 is not None and ms is not None:
                top1 = round(float(top1) * n) / n if n else float(top1)
                out.append(Point(r["candidate"], backend, top1, float(ms)))
    return out


def pareto_front(pts: list[Point]) -> list[Point]:
    """The points no other point beats on both axes (at least as accurate and at least as fast, better on
    one), fastest first."""
    def dominated(p: Point) -> bool:
        return any(q.top1 >= p.top1 and q.latency_ms <= p.latency_ms
                   and (q.top1 > p.top1 or q.latency_ms < p.latency_ms) for q in pts)

    return sorted((p for p in pts if not dominated(p)), key=lambda p: (p.latency_ms, -p.top1))


def _ratio(a: float, b: float) -> str:
    r = a / b
    return f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


def recommend(pts: list[Point], *, tolerance: float = TOLERANCE) -> tuple[Point | None, str]:
    """(the point to ship, one line with its reason): the fastest point within `tolerance` of the best
    top-1, set against the most accurate point of any other candidate."""
    if not pts:
        return None, "no candidate finished: nothing to recommend"
    best = max(p.top1 for p in pts)
    pick = min((p for p in pts if p.top1 >= best - tolerance), key=lambda p: (p.latency_ms, -p.top1))
    head = f"{pick.name}: {pick.top1:.1%} at {pick.latency_ms:.1f} ms per photo"
    rule = f"the fastest within {100 * tolerance:.0f} point of the best val top-1"
    others = [p for p in pts if p.candidate != pick.candidate]
    if not others:
        same = [p for p in pts if p is not pick]
        if not same:
            return pick, f"{head} (the only candidate measured)"
        alt = max(same, key=lambda p: (p.top1, -p.latency_ms))
        return pick, f"{head} ({rule}; the only candidate; {_versus(alt, pick)})"
    alt = max(others, key=lambda p: (p.top1, -p.latency_ms))
    return pick, f"{head} ({rule}); {_versus(alt, pick)}"


def _versus(alt: Point, pick: Point) -> str:
    """How `alt` compares with `pick`: "resnet18 PyTorch is 1.2 points lower and 3.0x slower"."""
    diff = 100 * (alt.top1 - pick.top1)
    acc = ("as accurate" if abs(diff) < 0.05 else f"{abs(diff):.1f} points {'higher' if diff > 0 else 'lower'}")
    if alt.latency_ms >= pick.latency_ms:
        speed = f"{_ratio(alt.latency_ms, pick.latency_ms)} slower"
        joint = " but " if diff > 0 else " and "
    else:
        speed = f"{_ratio(pick.latency_ms, alt.latency_ms)} faster"
        joint = " and " if diff > 0 else " but "
    return f"{alt.name} is {acc}{joint}{speed}"


def csv_row(r: dict[str, Any]) -> dict[str, Any]:
    lat, top = r["latency_ms"], r["top1_by_backend"]
    return {"candidate": r["candidate"], "how": r["how"], "input_size": r["input_size"], "epochs": r["epochs"],
            "val_top1": r["top1"], "val_macro_f1": r["macro_f1"], "params": r["params"], "macs": r["macs"],
            "ckpt_bytes": r["ckpt_bytes"], "onnx_bytes": r["onnx_bytes"], "int8_bytes": r["int8_bytes"],
            **{f"{k}_b{b}_ms": lat[k][str(b)] for k in BACKEND_NAMES for b in (1, 32)},
            "ort_fp32_top1": top["ort_fp32"], "ort_int8_top1": top["ort_int8"], "int8_agreement": r["int8_agreement"],
            "train_seconds": r["train_seconds"], "run_dir": r["run_dir"], "onnx_note": r["onnx_note"] or ""}


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "n/a" if v is None else v for k, v in csv_row(r).items()})
    return write_text_atomic(path, buf.getvalue())


def write_json(state: dict[str, Any], path: Path) -> Path:
    return write_text_atomic(path, json.dumps(state, indent=2) + "\n")


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def table(rows: list[dict[str, Any]]) -> str:
    """The terminal table: one line per candidate; latency in ms at batch 1 / per image at batch 32."""
    head = ("candidate", "px", "top-1", "F1", "params", "GMACs", "ckpt MB", "PyTorch ms", "ORT fp32 ms",
            "ORT int8 ms", "int8 top-1", "agree")
    body = []
    for r in rows:
        lat = r["latency_ms"]
        cells = [f"{_ms(lat[k]['1'])} / {_ms(None if lat[k]['32'] is None else lat[k]['32'] / 32)}"
                 for k in BACKEND_NAMES]
        body.append((r["candidate"], str(r["input_size"]), _pct(r["top1"]), _pct(r["macro_f1"]),
                     f"{r['params'] / 1e6:.1f}M", f"{r['macs'] / 1e9:.2f}", f"{r['ckpt_bytes'] / 2**20:.1f}", *cells,
                     _pct(r["top1_by_backend"]["ort_int8"]), _pct(r["int8_agreement"])))
    widths = [max(len(c) for c in col) for col in zip(head, *body)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [fmt(head), "-" * len(fmt(head)), *map(fmt, body)]
    notes = sorted({r["onnx_note"] for r in rows if r["onnx_note"]})
    lines.append("latency: ms at batch 1 / ms per image at batch 32, on this machine; top-1 and macro-F1 on the "
                 "val part; agree: int8's top-1 agreement with fp32")
    lines += [f"n/a: {n}" for n in notes]
    return "\n".join(lines)
