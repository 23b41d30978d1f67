"""compare.run: the comparison folder (resume: finished candidates skipped, an interrupted one resumed or
started again), refusals in one line, and a small run end to end on a generated image folder."""
from __future__ import annotations

import json

import pytest

from imgcls.compare import measure, plan, run
from imgcls.compare.run import compare
from imgcls.errors import ConfigError
from tests.conftest import make_tiny_folder, run_cli

LITE = "efficientnet_lite0.in1k"


def fake_row(top1: float) -> dict:
    lat = {k: {"1": 5.0, "32": 100.0} for k in ("eager", "ort_fp32", "ort_int8")}
    return {"top1": top1, "macro_f1": top1, "val_images": 10, "params": 1000, "macs": 10_000, "ckpt_bytes": 4096,
            "onnx_bytes": 2048, "int8_bytes": 1024,
            "top1_by_backend": {"eager": top1, "ort_fp32": top1, "ort_int8": top1},
            "int8_agreement": 1.0, "onnx_note": None, "latency_ms": lat}


@pytest.fixture
def fakes(monkeypatch):
    """Training and measuring replaced by records of the calls: `trained` lists the candidates trained,
    `interrupt_at` names one whose training is stopped as by Ctrl-C."""
    calls = {"trained": [], "interrupt_at": None}

    def train_candidate(step, out, source, opts, tag):
        if step.candidate.label == calls["interrupt_at"]:
            raise KeyboardInterrupt
        calls["trained"].append(step.candidate.label)
        (out / step.candidate.slug).mkdir(parents=True, exist_ok=True)
        return True

    monkeypatch.setattr(run, "train_candidate", train_candidate)
    monkeypatch.setattr(run, "measure_run", lambda run_dir, *a: fake_row(0.9 if "lite" in run_dir.name else 0.8))
    monkeypatch.setattr(run, "forward_speed", lambda *a, **k: 0.001)
    return calls


def test_a_rerun_skips_what_finished_and_ctrl_c_keeps_it(tmp_path, fakes):
    data = make_tiny_folder(tmp_path / "data", per_class=10)
    kw = dict(models=f"{LITE},resnet18", input_size=32, budget="1h", out=str(tmp_path / "cmp"), progress=False)
    fakes["interrupt_at"] = "resnet18 (scratch)"
    first = compare(data, **kw)
    assert first.interrupted and fakes["trained"] == [LITE]
    state = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["candidate"] for r in state["candidates"].values()] == [LITE]  # what finished is on disk
    assert (tmp_path / "cmp" / "compare.csv").read_text().count("\n") == 2
    fakes["interrupt_at"] = None
    second = compare(data, **kw)
    assert fakes["trained"] == [LITE, "resnet18 (scratch)"] and not second.interrupted
    assert [r["candidate"] for r in second.rows] == [LITE, "resnet18 (scratch)"]
    assert second.recommendation.startswith(f"{LITE} PyTorch: 90.0% at 5.0 ms")
    third = compare(data, **kw)  # nothing left to do
    assert fakes["trained"] == [LITE, "resnet18 (scratch)"] and len(third.rows) == 2
    assert {f.name for f in third.files} == {"compare.json", "compare.csv", "compare.png"}
    assert (tmp_path / "cmp" / "split" / "split.json").is_file()  # the one split every candidate used


def test_an_out_of_other_data_or_other_files_is_refused(tmp_path, fakes):
    a, b = make_tiny_folder(tmp_path / "a", per_class=10), make_tiny_folder(tmp_path / "b", per_class=11)
    out = tmp_path / "cmp"
    compare(a, models=LITE, input_size=32, budget="1h", out=str(out), progress=False)
    with pytest.raises(ConfigError, match=r"^--out .*cmp: holds a comparison of other data \(.*a: 3 classes, 27 train "
                                          r"/ 3 val photos\); choose another --out"):
        compare(b, models=LITE, input_size=32, out=str(out), progress=False)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    with pytest.raises(ConfigError, match="exists and holds no imgcls comparison"):
        compare(a, models=LITE, out=str(other), progress=False)
    assert (other / "todo.txt").read_text() == "x"


def test_a_run_stopped_before_its_first_checkpoint_starts_again_and_one_with_last_ckpt_resumes(tmp_path, monkeypatch):
    import imgcls.engine

    seen = []

    class Done:
        interrupted = False

    monkeypatch.setattr(imgcls.engine, "train", lambda cfg, given=None: seen.append((cfg, given)) or Done())
    monkeypatch.setattr(run, "_finished_epochs", lambda last: False)
    from imgcls.compare.candidates import resolve_candidate
    from imgcls.compare.options import CompareOptions
    from imgcls.compare.plan import Speed, Step

    step = Step(resolve_candidate(LITE, 64), 30, 10.0, Speed(0.01, 0.01))
    run_dir = tmp_path / step.candidate.slug
    run_dir.mkdir()
    (run_dir / "train.log").write_text("started")
    assert run.train_candidate(step, tmp_path, tmp_path / "split.json", CompareOptions(progress=False), "[1/1]")
    assert not run_dir.exists()  # nothing to resume from: removed, then trained from the start
    cfg, given = seen[-1]
    assert (cfg.model.weights, cfg.model.transfer, cfg.train.name, cfg.data.input_size) == (
        LITE, "head", run_dir.name, 64)
    assert {"weights", "input_size"} <= given
    run_dir.mkdir()
    (run_dir / "last.ckpt").write_bytes(b"")
    assert run.train_candidate(step, tmp_path, tmp_path / "split.json", CompareOptions(progress=False), "[1/1]")
    cfg, given = seen[-1]
    assert cfg.train.resume == str(run_dir / "last.ckpt") and given == {"resume", "progress"}
    (run_dir / "report.json").write_text("{}")
    (run_dir / "best.ckpt").write_bytes(b"")
    run.train_candidate(step, tmp_path, tmp_path / "split.json", CompareOptions(progress=False), "[1/1]")
    assert len(seen) == 2  # trained already: only measured again


def test_end_to_end_without_onnx(tmp_path, monkeypatch, capsys):
    """A real head on efficientnet_lite0's cached features at 64 px; the ONNX columns n/a as without the
    export extra; the run folder is a normal one (predict works on it)."""
    monkeypatch.setattr(measure, "onnx_missing", lambda: "onnxruntime not installed: pip install 'imgcls[export]'")
    monkeypatch.setattr(measure, "LATENCY_ROUNDS", 1)
    monkeypatch.setattr(measure, "LATENCY_MIN_TIME", 0.0)
    data = make_tiny_folder(tmp_path / "data", per_class=10, size=48)
    out = tmp_path / "cmp"
    assert run_cli(["compare", data, "--models", LITE, "--input-size", "64", "-o", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "n/a: onnxruntime not installed" in printed and f"recommended: {LITE} PyTorch:" in printed
    (row,) = json.loads((out / "compare.json").read_text())["candidates"].values()
    assert row["latency_ms"]["ort_int8"]["1"] is None and row["latency_ms"]["eager"]["32"] > 0
    assert row["params"] > 3_000_000 and row["macs"] > 0 and row["input_size"] == 64
    from imgcls.inference import Predictor

    photo = sorted(data.rglob("*.jpg"))[0]
    assert Predictor.from_checkpoint(out / row["run_dir"] / "best.ckpt", workers=0).predict([photo])[0].error is None


@pytest.mark.slow
def test_end_to_end_with_onnx(tmp_path, monkeypatch):
    """Two tiny candidates (a head at 64 px, resnet18 from scratch for 1 epoch at 32 px), exported to ONNX
    fp32 and int8 and timed under the three backends."""
    pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install 'imgcls[export]'")
    monkeypatch.setattr(plan, "SCRATCH_EPOCHS", 1)
    monkeypatch.setattr(plan, "MIN_SCRATCH_EPOCHS", 1)
    monkeypatch.setattr(measure, "LATENCY_ROUNDS", 1)
    monkeypatch.setattr(measure, "LATENCY_MIN_TIME", 0.0)
    data = make_tiny_folder(tmp_path / "data", per_class=10, size=48)
    result = compare(data, models=f"{LITE},resnet18", input_size=64, out=str(tmp_path / "cmp"), progress=False)
    assert [r["candidate"] for r in result.rows] == [LITE, "resnet18 (scratch)"]
    for r in result.rows:
        assert all(r["latency_ms"][k][b] > 0 for k in ("eager", "ort_fp32", "ort_int8") for b in ("1", "32"))
        assert 0 <= r["int8_agreement"] <= 1 and r["onnx_note"] is None
        assert (tmp_path / "cmp" / r["run_dir"] / "model.int8.onnx").is_file()
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert result.recommendation.split(" ")[0] in (LITE, "resnet18")


@pytest.mark.slow
def test_ctrl_c_in_training_then_the_same_command_resumes_from_last_ckpt(tmp_path, monkeypatch, caplog):
    """A real from-scratch run stopped by SIGINT after its 2nd step: compare stops with what it has; the rerun
    resumes that run from its last.ckpt (not from the start) and measures it."""
    from tests.conftest import stop_after_step

    monkeypatch.setattr(measure, "onnx_missing", lambda: "onnxruntime not installed: pip install 'imgcls[export]'")
    monkeypatch.setattr(measure, "LATENCY_ROUNDS", 1)
    monkeypatch.setattr(measure, "LATENCY_MIN_TIME", 0.0)
    monkeypatch.setattr(plan, "SCRATCH_EPOCHS", 2)
    data = make_tiny_folder(tmp_path / "data", per_class=10, size=40)
    kw = dict(models="resnet18", input_size=32, budget="1h", out=str(tmp_path / "cmp"), progress=False)
    with monkeypatch.context() as m:
        stop_after_step(m, 2, "ctrl-c")
        first = compare(data, **kw)
    run_dir = tmp_path / "cmp" / "resnet18-scratch-32"
    assert first.interrupted and first.rows == [] and (run_dir / "last.ckpt").is_file()
    caplog.clear()
    with caplog.at_level("INFO", logger="imgcls"):
        second = compare(data, **kw)
    assert not second.interrupted and [r["candidate"] for r in second.rows] == ["resnet18 (scratch)"]
    assert any("resuming its interrupted training" in r.message for r in caplog.records)
    assert any(r.message.startswith(f"resuming {run_dir / 'last.ckpt'} at epoch 2") for r in caplog.records)


def test_a_candidate_dropped_by_an_overestimate_runs_once_the_first_one_shows_it(tmp_path, fakes, caplog):
    # each estimate is ~30 s (exports and timing rounds); the fake candidates take no time at all, so after
    # the first one compare re-plans with the estimates x 0.25 and the second fits what is left of 45 s
    data = make_tiny_folder(tmp_path / "data", per_class=10)
    caplog.set_level("INFO", logger="imgcls")
    result = compare(data, models=f"{LITE},efficientnet_lite1.in1k", input_size=32, budget="45s",
                     out=str(tmp_path / "cmp"), progress=False)
    assert "dropped efficientnet_lite1.in1k" in caplog.text and "re-planned with the estimates x 0.25" in caplog.text
    assert fakes["trained"] == [LITE, "efficientnet_lite1.in1k"]
    assert [s.candidate.label for s in result.plan.steps] == [LITE, "efficientnet_lite1.in1k"]
