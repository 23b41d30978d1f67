"""The calibration a run records (temperature, abstain thresholds) as predict, eval, cam and exported
files read it; a checkpoint or file without one is read as temperature 1."""
import json

import pytest
import torch

from imgcls.checkpoint import Calibration, checkpoint_source, load_checkpoint, save_checkpoint
from imgcls.errors import CheckpointError
from imgcls.inference import Predictor, evaluate
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("conf"))


def with_calibration(ckpt, tmp_path, record, name="c.ckpt"):
    state = load_checkpoint(ckpt)
    state.pop("calibration", None)
    if record is not None:
        state["calibration"] = record
    return save_checkpoint(state, tmp_path / name)


def test_training_writes_the_val_calibration_into_best_ckpt(trained):
    _, ckpt = trained
    record = load_checkpoint(ckpt)["calibration"]
    assert record["fitted_on"] == 9 and 0.05 <= record["temperature"] <= 20
    assert record["ece_after"] <= record["ece_before"] + 1e-9 and "0.99" in record["abstain"]
    source = checkpoint_source(ckpt)
    assert source.calibration.temperature == pytest.approx(record["temperature"])
    assert Predictor.load(source).temperature == pytest.approx(record["temperature"])


def test_predict_divides_the_logits_by_the_temperature_and_an_old_checkpoint_is_t_1(trained, tmp_path):
    data, ckpt = trained
    path = sorted((data / "class_0").glob("*.jpg"))[0]
    old = Predictor.from_checkpoint(with_calibration(ckpt, tmp_path, None, "old.ckpt"))
    hot = Predictor.from_checkpoint(with_calibration(ckpt, tmp_path, {"temperature": 4.0}, "hot.ckpt"))
    assert old.temperature == 1.0 and hot.temperature == 4.0
    a, b = old.predict([path], topk=3)[0], hot.predict([path], topk=3)[0]
    assert a.labels == b.labels  # the ranking never changes
    logits = torch.tensor(a.probs).log()
    assert b.probs == pytest.approx((logits / 4).softmax(0).tolist(), abs=1e-5)


@pytest.mark.parametrize("record, says", [({"temperature": 0}, "calibration temperature 0: must be a positive"),
                                          ({"temperature": "x"}, "calibration temperature 'x'"),
                                          ({"abstain": {"0.99": 2.0}}, "calibration abstain {'0.99': 2.0}"),
                                          ([1], r"calibration \[1\]: must be a mapping")])
def test_a_changed_calibration_is_one_line_naming_the_file(trained, tmp_path, record, says):
    bad = with_calibration(trained[1], tmp_path, record)
    with pytest.raises(CheckpointError, match=f"c.ckpt: {says}"):
        checkpoint_source(bad)


def test_eval_reports_ece_before_and_after_and_draws_the_reliability_diagram(trained, tmp_path):
    data, ckpt = trained
    hot = with_calibration(ckpt, tmp_path, {"temperature": 3.0})
    report, out = evaluate(hot, data, out_dir=tmp_path / "ev", workers=0, progress=False)
    conf = json.loads((out / "report.json").read_text())["confidence"]
    assert conf["temperature"] == 3.0 and conf["bins"] == 15 and conf["ece_before"] != conf["ece_after"]
    assert set(conf["accuracy_at_coverage"]) == {"0.9", "0.95"}
    assert (out / "reliability.png").is_file() and "ECE (15 bins)" in (out / "report.txt").read_text()


def test_onnx_metadata_carries_the_calibration():
    pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install 'imgcls[export]'")
    from imgcls.data import Preprocessing
    from imgcls.export.session import decode_metadata, encode_metadata

    pre = Preprocessing(resize=37, crop=32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    meta = encode_metadata(classes=["a", "b"], preprocessing=pre, arch={"model": "resnet18"}, source="x",
                           precision="fp32", opset=18, calibration=Calibration(2.0, {"0.99": 0.9}, 10))
    got = decode_metadata(meta, "m.onnx")["calibration"]
    assert got.temperature == 2.0 and got.abstain == {"0.99": 0.9}
    meta.pop("calibration")  # a file exported before calibration existed
    assert decode_metadata(meta, "m.onnx")["calibration"].temperature == 1.0
    meta["calibration"] = json.dumps({"temperature": -1})
    with pytest.raises(CheckpointError, match="m.onnx: metadata calibration temperature -1"):
        decode_metadata(meta, "m.onnx")
