"""`imgcls export` of a segmentation checkpoint (a tiny FCN-8s, 3 classes, untrained enough): one ONNX file
with dynamic batch, height and width, verified against PyTorch at each photo's own size, whose metadata
says segmentation (classes, palette, void, preprocessing); predict, eval and serve take it and give the
checkpoint's masks; static int8 reports its pixel agreement and mean IoU against fp32."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="the export extra is not installed: pip install -e '.[export]'")

from imgcls.checkpoint import load_source  # noqa: E402
from imgcls.errors import CheckpointError  # noqa: E402
from imgcls.export import OrtRunner, export_onnx  # noqa: E402
from imgcls.export.quantize import mean_iou  # noqa: E402
from imgcls.export.session import decode_metadata, encode_metadata  # noqa: E402
from imgcls.models.seg_parts import padded_forward  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.seg_data import NAMES, PALETTE, VOID, mask_pattern, photo_of, train_tiny_seg  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_seg(tmp_path_factory.mktemp("segexport"))


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    data, ckpt = trained
    return export_onnx(ckpt, tmp_path_factory.mktemp("segonnx") / "seg.onnx", val=data)


def test_export_is_verified_at_each_photos_size_and_says_segmentation(trained, exported):
    data, ckpt = trained
    assert exported.task == "segmentation" and exported.n_checked == 2 and exported.rel_diff <= 1e-4
    assert exported.pixel_agreement == 1.0 and exported.size < 3 * 2**20
    text = exported.to_text()
    assert "argmax masks agree on 100.0000% of the pixels" in text and "any height and width" in text
    runner = OrtRunner(exported.path)
    meta = runner.metadata
    assert meta["task"] == "segmentation" and meta["classes"] == NAMES
    assert meta["labels"] == {"void": VOID, "palette": [list(c) for c in PALETTE]}
    assert meta["preprocessing"].crop is None and meta["preprocessing"].resize == 32
    x = runner.session.get_inputs()[0]
    assert x.shape[0] == "batch" and all(isinstance(d, str) for d in x.shape[2:])
    model = load_source(ckpt).network
    torch.manual_seed(0)
    for shape in ((1, 3, 32, 48), (2, 3, 45, 33)):  # odd sizes too: the graph pads them to whole stride-32 cells
        batch = torch.randn(*shape)
        with torch.no_grad():
            ref = padded_forward(model, batch)["out"]
        got = runner(batch)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-4 * ref.abs().max().item())


def test_predict_and_eval_of_the_onnx_file_give_the_checkpoints_masks(trained, exported, tmp_path, capsys):
    data, ckpt = trained
    Image.fromarray(photo_of(mask_pattern(70, 50, 5))).save(tmp_path / "other.png")
    photos = [data / "val/images/val00.png", tmp_path / "other.png"]
    outs = {}
    for name, source in (("ckpt", ckpt), ("onnx", exported.path)):
        capsys.readouterr()
        assert run_cli(["predict", source, *photos, "--json", "-o", tmp_path / name]) == 0
        outs[name] = json.loads(capsys.readouterr().out)
    assert [r["shares"] for r in outs["onnx"]] == [r["shares"] for r in outs["ckpt"]]
    for stem in ("val00", "other"):
        a, b = (np.asarray(Image.open(tmp_path / n / f"{stem}.png")) for n in ("ckpt", "onnx"))
        assert a.shape == b.shape and (a == b).mean() > 0.999
        assert Image.open(tmp_path / "onnx" / f"{stem}.png").getpalette()[:12] == [v for c in PALETTE for v in c]
    assert (tmp_path / "onnx" / "other_overlay.jpg").is_file()
    reports = {}
    for name, source in (("ckpt", ckpt), ("onnx", exported.path)):
        assert run_cli(["eval", source, data, "--workers", 0, "-o", tmp_path / f"eval-{name}"]) == 0
        reports[name] = json.loads((tmp_path / f"eval-{name}" / "report.json").read_text())
        assert (tmp_path / f"eval-{name}" / "worst.png").is_file()
    assert reports["onnx"]["miou"] == pytest.approx(reports["ckpt"]["miou"], abs=1e-3)
    assert [w["path"] for w in reports["onnx"]["worst"]] == [w["path"] for w in reports["ckpt"]["worst"]]


def test_serve_of_the_onnx_file_returns_masks(trained, exported):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'imgcls[serve]'")
    from imgcls.serve import open_model

    data, _ = trained
    service = open_model(exported.path, device="cpu")
    card = service.card()
    assert card["task"] == "segmentation" and card["backend"] == "onnxruntime" and card["architecture"] == "fcn8s"
    photo = data / "val/images/val01.png"
    got = service.predict([(photo.name, photo.read_bytes())])[0]
    assert got["size"] == [48, 32] and sum(s["share"] for s in got["shares"]) == pytest.approx(1.0)


def test_int8_reports_pixel_agreement_and_mean_iou_against_fp32(trained, tmp_path):
    data, ckpt = trained
    result = export_onnx(ckpt, tmp_path / "seg.int8.onnx", int8=True, calib=data, calib_methods="minmax",
                         weight_bits=8, fp32_ends="no", min_agreement=0.0)
    assert result.precision == "int8" and 0 <= result.agreement <= 1 and 0 <= result.miou_vs_fp32 <= 1
    assert "of the pixels checked, mean IoU" in result.to_text()
    runner = OrtRunner(result.path)
    assert runner.metadata["precision"] == "int8" and runner.metadata["task"] == "segmentation"
    assert runner(torch.zeros(1, 3, 40, 56)).shape == (1, 3, 40, 56)


def test_mean_iou_against_a_reference():
    ref = torch.tensor([0, 0, 1, 1, 2, 2])
    assert mean_iou(ref, ref) == 1.0
    assert mean_iou(ref, torch.tensor([0, 0, 1, 1, 2, 1])) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)


@pytest.mark.parametrize("change, needle", [
    ({"task": "detection"}, "metadata task \"detection\": must be classification, multilabel or segmentation"),
    ({"labels": json.dumps({"void": 3})}, "a segmentation model needs its void index (0..255) and its palette"),
    ({"labels": json.dumps({"void": 300, "palette": []})}, "a segmentation model needs its void index"),
])
def test_altered_segmentation_metadata_is_one_line(change, needle):
    from imgcls.data import Preprocessing

    pre = Preprocessing(32, None, (0.5,) * 3, (0.5,) * 3, "bilinear")
    props = encode_metadata(classes=NAMES, preprocessing=pre, arch={"model": "fcn8s"}, source="x", precision="fp32",
                            opset=18, task="segmentation", labels={"void": 3, "palette": [[0, 0, 0]]})
    assert decode_metadata(props, "m.onnx")["task"] == "segmentation"
    with pytest.raises(CheckpointError) as e:
        decode_metadata(props | change, "m.onnx")
    assert needle in str(e.value) and str(e.value).startswith("m.onnx: ") and "\n" not in str(e.value)
