"""`imgcls export` and ONNX Runtime inference on a tiny trained resnet18 (3 classes, 32 px): the export is
verified against PyTorch, carries its metadata, predicts and evaluates like its checkpoint; int8 is
calibrated, checked for agreement and refused below the threshold; every bad input is one line, exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="the export extra is not installed: pip install -e '.[export]'")

from imgcls.checkpoint import load_model, load_source  # noqa: E402
from imgcls.data import make_split, open_parts, write_split  # noqa: E402
from imgcls.errors import CheckpointError, ConfigError, ExportError  # noqa: E402
from imgcls.export import OrtRunner, export_onnx  # noqa: E402
from imgcls.export.images import export_photos, float_batches, image_files  # noqa: E402
from imgcls.paths import bundled_photos  # noqa: E402
from imgcls.export.onnx import verify_fp32  # noqa: E402
from imgcls.export.quantize import cpu_has_vnni, resolve_weight_bits  # noqa: E402
from imgcls.inference import Predictor, evaluate, open_source  # noqa: E402
from tests.conftest import error_line, run_cli, train_tiny  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    data, ckpt = trained
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(ckpt, out, val=data, check_images=12)


def test_export_is_verified_and_self_contained(trained, exported):
    data, ckpt = trained
    model, state = load_model(ckpt)
    assert exported.path.is_file() and exported.n_checked == 12 and exported.rel_diff <= 1e-4
    assert not list(exported.path.parent.glob(".*.tmp")) and not list(exported.path.parent.glob("*.data"))
    runner = OrtRunner(exported.path)
    meta = runner.metadata
    assert meta["classes"] == state["classes"] and meta["arch"] == state["arch"]
    assert meta["preprocessing"].to_dict() == json.loads(json.dumps(state["preprocessing"]))  # tuples come back as lists
    assert meta["precision"] == "fp32" and meta["imgcls_version"] and meta["opset"] == "18"
    # dynamic batch: 1 and 5 images give PyTorch's logits
    x = next(float_batches(image_files(data, limit=5), load_source(ckpt).preprocessing))
    for batch in (x[:1], x):
        with torch.no_grad():
            ref = model.eval()(batch)
        assert runner(batch).shape == ref.shape
        assert torch.allclose(runner(batch), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_an_exported_file_opens_as_a_source_with_its_checkpoints_records(trained, exported):
    _, ckpt = trained
    source, checkpoint = open_source(exported.path), open_source(ckpt)
    assert source.kind == "onnx" and source.network is None and isinstance(source.runner, OrtRunner)
    assert (source.classes, source.preprocessing, source.arch) == (checkpoint.classes, checkpoint.preprocessing,
                                                                   checkpoint.arch)
    assert source.calibration == checkpoint.calibration and source.calibration.fitted  # the val temperature
    with pytest.raises(CheckpointError, match="an exported ONNX file, not a checkpoint or weights name"):
        load_source(exported.path)  # what export opens: it refuses its own output as a source


def test_predict_and_eval_of_the_onnx_file_match_the_checkpoint(trained, exported, tmp_path, capsys):
    data, ckpt = trained
    files = image_files(data, limit=9)
    onnx_pred, ckpt_pred = Predictor.load(exported.path, batch_size=4), Predictor.load(ckpt, batch_size=4)
    assert onnx_pred.backend == "onnxruntime" and onnx_pred.model is None and ckpt_pred.backend == "pytorch"
    assert onnx_pred.classes == ckpt_pred.classes
    a, b = onnx_pred.predict(files, topk=2), ckpt_pred.predict(files, topk=2)
    assert [p.labels for p in a] == [p.labels for p in b]
    assert np.allclose([p.probs for p in a], [p.probs for p in b], atol=1e-4)
    r1, _ = evaluate(exported.path, data, out_dir=tmp_path / "e1", workers=0, progress=False)
    r2, _ = evaluate(ckpt, data, out_dir=tmp_path / "e2", workers=0, progress=False)
    assert r1.n == r2.n == 36 and r1.top1 == r2.top1
    assert run_cli(["predict", exported.path, files[0], "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "path,rank,label,prob,error,answer" and rows[1].split(",")[2] == b[0].labels[0]
    # the exported file has no PyTorch graph to take gradients of: --cam is refused before any work
    assert run_cli(["eval", exported.path, data, "--cam", 2, "-o", tmp_path / "e3"]) == 2
    assert "--cam needs a PyTorch model" in error_line(capsys, only=True) and not (tmp_path / "e3").exists()
    # serve and cam take the same sources: the .onnx file serves without Grad-CAM
    from imgcls.serve.service import open_model

    service = open_model(exported.path)
    assert service.predictor.backend == "onnxruntime" and service.info["architecture"] == "resnet18"


def test_int8_is_calibrated_checked_and_refused_below_the_threshold(trained, tmp_path):
    data, ckpt = trained
    out = tmp_path / "tiny.int8.onnx"
    result = export_onnx(ckpt, out, int8=True, calib=bundled_photos(), calib_images=24, val=data, check_images=8,
                         min_agreement=0.5, calib_methods="minmax,percentile", fp32_ends="no")
    tried = {f"{m} {b}-bit" for m in ("minmax", "percentile") for b in resolve_weight_bits("auto")}
    assert result.precision == "int8" and set(result.method_agreement) == tried
    assert result.agreement == max(result.method_agreement.values()) >= 0.5
    assert result.weight_bits in resolve_weight_bits("auto") and f"{result.weight_bits}-bit weights" in result.to_text()
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    runner = OrtRunner(out)
    assert runner.metadata["precision"] == "int8" and runner.metadata["classes"] == ["class_0", "class_1", "class_2"]
    # the agreement it reports is the agreement a user gets from predict
    files = image_files(data)
    got = [p.label for p in Predictor.load(out).predict(files, topk=1)]
    ref = [p.label for p in Predictor.load(ckpt).predict(files, topk=1)]
    assert np.mean([g == r for g, r in zip(got, ref)]) == pytest.approx(result.agreement, abs=1e-6)
    # refused: 2 calibration images do not reach 100% agreement; nothing written, no temporaries left
    poor = tmp_path / "poor.onnx"
    with pytest.raises(ExportError, match=r"agrees with fp32 on top-1 for .* below --min-agreement 100%"):
        export_onnx(ckpt, poor, int8=True, calib=bundled_photos(), calib_images=2, val=data, check_images=4,
                    min_agreement=1.0, calib_methods="minmax", fp32_ends="no")
    assert not poor.exists() and not list(tmp_path.glob(".*.tmp"))


def test_int8_calibrates_on_a_split_index_as_train_and_eval_read_it(trained, tmp_path, monkeypatch, capsys):
    """`export --int8 --calib split.json` was refused ("no such folder of calibration images") where train and
    eval read the same index: its train part calibrates, its val part checks and measures the agreement."""
    import imgcls.export.quantize as quantize

    data, ckpt = trained
    assert run_cli(["split", data, "-o", tmp_path / "split", "--mode", "index", "--val", "0.25"]) == 0
    index = tmp_path / "split" / "split.json"
    parts = open_parts(index)
    assert run_cli(["eval", ckpt, index, "--part", "val", "-o", tmp_path / "eval", "--workers", "0"]) == 0
    seen, original = {}, quantize.quantize_best

    def spy(fp32, runner, calib_paths, agree_paths, *args, **kw):
        seen.update(calib=calib_paths, agree=agree_paths)
        return original(fp32, runner, calib_paths, agree_paths, *args, **kw)

    monkeypatch.setattr(quantize, "quantize_best", spy)
    capsys.readouterr()
    assert run_cli(["export", ckpt, "-o", tmp_path / "q.onnx", "--int8", "--calib", index, "--calib-images", "8",
                    "--check-images", "4", "--min-agreement", "0", "--calib-methods", "minmax",
                    "--fp32-ends", "no"]) == 0
    assert len(seen["calib"]) == 8 and set(seen["calib"]) <= set(parts.files("train"))
    assert seen["agree"] == parts.files("val")
    assert f"verified on 4 images from {index}" in capsys.readouterr().out


def test_check_and_calibration_photos_are_read_as_train_and_eval_read_data(trained, tmp_path):
    data, _ = trained
    index = write_split(make_split(data, val=0.25), tmp_path / "split", mode="index")
    val_part = open_parts(index).files("val")
    photos = export_photos(data, index, calib_images=5, check_images=3)  # --val split.json: its val part
    assert photos.calib == image_files(data, limit=5) and photos.agree == val_part
    assert set(photos.check) <= set(val_part) and len(photos.check) == 3 and photos.checked_on == str(index)
    # a split folder whose parts hold photos without class folders: train calibrates, val checks
    for part, names in (("train", ["1.jpg", "2.jpg", "3.jpg"]), ("val", ["4.jpg"])):
        (tmp_path / "flat" / part).mkdir(parents=True)
        for name in names:
            (tmp_path / "flat" / part / name).write_bytes(image_files(data)[0].read_bytes())
    photos = export_photos(tmp_path / "flat", None, calib_images=2, check_images=3)
    assert [p.name for p in photos.calib] == ["1.jpg", "3.jpg"] and [p.name for p in photos.check] == ["4.jpg"]
    assert photos.agree == photos.check and photos.checked_on == str(tmp_path / "flat" / "val")
    # nothing to check on: the bundled photos; int8 agreement on the calibration photos not calibrated on
    photos = export_photos(tmp_path / "flat" / "train", None, calib_images=2, check_images=3)
    assert photos.checked_on == str(bundled_photos()) and [p.name for p in photos.agree] == ["2.jpg"]


def _weight_is_quantized(model, node) -> bool:
    """Whether a Conv/Gemm node's weight comes through a DequantizeLinear (QDQ) rather than as fp32."""
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    return producers.get(node.input[1]) == "DequantizeLinear"


def test_fp32_ends_leave_the_stem_and_the_classifier_unquantized(trained, tmp_path):
    import onnx

    data, ckpt = trained
    out = tmp_path / "ends.int8.onnx"
    result = export_onnx(ckpt, out, int8=True, calib=bundled_photos(), calib_images=8, val=data, check_images=4,
                         min_agreement=0.0, calib_methods="minmax", fp32_ends="yes")
    assert result.fp32_ends and all(label.endswith(", ends fp32") for label in result.method_agreement)
    assert "first convolution and classifier in fp32" in result.to_text()
    model = onnx.load(str(out))
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert [_weight_is_quantized(model, n) for n in (weighted[0], weighted[-1])] == [False, False]
    assert all(_weight_is_quantized(model, n) for n in weighted[1:-1])  # everything between stays int8
    assert OrtRunner(out).metadata["precision"] == "int8"


def test_fp32_ends_auto_is_tried_only_below_the_agreement_demanded(trained, tmp_path):
    data, ckpt = trained
    kw = dict(int8=True, calib=bundled_photos(), val=data, check_images=4, calib_methods="minmax")
    easy = export_onnx(ckpt, tmp_path / "easy.onnx", calib_images=8, min_agreement=0.0, **kw)
    assert not easy.fp32_ends and not any("ends" in label for label in easy.method_agreement)
    # 2 calibration images and 100% demanded: the fully int8 candidates fall short, so the ends are retried
    try:
        tried = " ".join(export_onnx(ckpt, tmp_path / "hard.onnx", calib_images=2, min_agreement=1.0,
                                     **kw).method_agreement)
    except ExportError as e:  # refused: its message lists every candidate tried
        tried = str(e)
    assert "minmax 8-bit, ends fp32" in tried or "minmax 7-bit, ends fp32" in tried, tried


def test_verification_fails_loudly_above_the_tolerance(trained, exported):
    data, ckpt = trained
    source = load_source(ckpt)
    model, pre = source.network, source.preprocessing
    paths = image_files(data, limit=4)
    diff, rel, n = verify_fp32(model, OrtRunner(exported.path), paths, pre, tolerance=1e-4)
    assert n == 4 and 0 <= rel <= 1e-4 and diff >= 0
    with pytest.raises(ExportError, match=r"ONNX Runtime disagrees with PyTorch: .* > tolerance 1e-30\) on 4 images"):
        verify_fp32(model, OrtRunner(exported.path), paths, pre, tolerance=1e-30)


def test_bad_inputs_are_one_line_exit_2(trained, exported, tmp_path, capsys):
    data, ckpt = trained
    (tmp_path / "notes.onnx").write_text("not a model")
    (tmp_path / "empty").mkdir()
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    onnx.save_model(helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    photo = image_files(data, limit=1)[0]
    cases = [
        (["export", "resnet19", "-o", tmp_path / "a.onnx"], "unknown weights 'resnet19'"),
        (["export", tmp_path / "missing.ckpt", "-o", tmp_path / "a.onnx"], "missing.ckpt: no such checkpoint"),
        (["predict", tmp_path / "notes.onnx", photo], "notes.onnx: not an ONNX model ONNX Runtime can read"),
        (["eval", tmp_path / "notes.onnx", data], "notes.onnx: not an ONNX model ONNX Runtime can read"),
        (["predict", tmp_path / "foreign.onnx", photo], "foreign.onnx: an ONNX model without imgcls's metadata"),
        (["export", ckpt, "-o", tmp_path / "q.onnx", "--int8", "--calib", tmp_path / "empty"],
         "empty: has no images"),
        (["export", ckpt, "-o", tmp_path / "q.onnx", "--int8"], "--int8 needs --calib DATA"),
        (["export", ckpt, "-o", ckpt], "name the output file .onnx"),
        (["export", exported.path, "-o", tmp_path / "a.onnx"],
         "an exported ONNX file, not a checkpoint or weights name"),
        (["export", ckpt, "-o", tmp_path / "q.onnx", "--int8", "--calib", data, "--calib-methods", "median"],
         "--calib-methods median: use one or more of minmax, percentile, entropy"),
    ]
    for argv, expected in cases:
        assert run_cli(argv) == 2, argv
        assert expected in error_line(capsys, only=True), argv
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "q.onnx").exists()
    # a checkpoint under an .onnx name is never overwritten by an export
    disguised = tmp_path / "best.onnx"
    disguised.write_bytes(ckpt.read_bytes())
    assert run_cli(["export", ckpt, "-o", disguised]) == 2
    assert "is a PyTorch file, not an ONNX model" in error_line(capsys, only=True)
    assert disguised.read_bytes() == ckpt.read_bytes()
    # --fp32-ends takes auto, yes or no: refused by the CLI and by the Python API, nothing written
    assert run_cli(["export", ckpt, "-o", tmp_path / "e.onnx", "--fp32-ends", "maybe"]) == 2
    with pytest.raises(ConfigError, match=r"^--fp32-ends maybe: use auto, yes, no$"):
        export_onnx(ckpt, tmp_path / "e.onnx", fp32_ends="maybe")
    assert not (tmp_path / "e.onnx").exists()


def test_weight_bits_follow_the_cpu_unless_given(monkeypatch):
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert cpu_has_vnni(avx2, "x86_64") is False
    assert cpu_has_vnni(avx2.replace("fma", "fma avx512f avx512_vnni"), "x86_64") is True
    assert cpu_has_vnni(avx2.replace("fma", "fma avx_vnni"), "AMD64") is True
    assert cpu_has_vnni("", "aarch64") is True  # no saturating 16-bit sums there
    assert resolve_weight_bits("7") == (7,) and resolve_weight_bits(8) == (8,)
    for vnni, bits in ((True, (8,)), (False, (8, 7)), (None, (8, 7))):
        monkeypatch.setattr("imgcls.export.quantize.cpu_has_vnni", lambda v=vnni: v)
        assert resolve_weight_bits("auto") == bits
    with pytest.raises(ConfigError, match="--weight-bits 6: use auto, 7 or 8"):
        export_onnx("resnet18", "x.onnx", weight_bits=6)
