"""An "unknown" answer: --abstain P or precision:Q in predict, eval and serve; the thresholds train stores
hold on the data they were chosen on."""
import json

import pytest

from imgcls.checkpoint import Calibration, load_checkpoint, save_checkpoint
from imgcls.cli import main
from imgcls.errors import ConfigError
from imgcls.inference import Prediction, Predictor, evaluate
from imgcls.inference.abstain import AbstainRule, parse_abstain, stored_threshold
from imgcls.inference.predictor import format_predictions
from imgcls.reports import calibration as cal
from tests.conftest import train_tiny
from tests.reports.test_calibration import calibrated


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("abstain"))


def test_parse_abstain():
    assert parse_abstain(None) is None
    assert parse_abstain("0.6") == AbstainRule("probability", 0.6) and parse_abstain(0.5).value == 0.5
    assert parse_abstain("precision:0.99") == AbstainRule("precision", 0.99)
    for bad in ("1.5", "recall:0.9", "precision:x", "nan", "precision:0", "-0.1"):
        with pytest.raises(ConfigError, match=f"--abstain '{bad}'"):
            parse_abstain(bad)


def test_stored_thresholds_hold_on_the_val_data_they_were_chosen_on():
    logits, targets = calibrated(n=3000, seed=1)
    z = 2.5 * logits
    record = cal.calibration_record(z, targets)
    probs = cal.scaled_probs(z, record["temperature"])
    reached = 0
    for p, t in record["abstain"].items():
        if t is None:
            continue
        reached += 1
        coverage, accuracy = cal.coverage_and_accuracy(probs, targets, t)
        assert accuracy >= float(p) and 0 < coverage < 1
        # the largest coverage that holds it: a slightly lower threshold answers more and falls short
        below = probs.max(1).values[probs.max(1).values < t].max().item()
        assert cal.coverage_and_accuracy(probs, targets, below)[1] < float(p)
    assert reached >= 3
    calibration = Calibration.from_dict(record, where="x")
    assert stored_threshold(parse_abstain("precision:0.95"), calibration, "x") == record["abstain"]["0.95"]


def test_stored_threshold_says_what_the_record_cannot_give():
    table = Calibration(1.2, {"0.9": 0.5, "0.999": None}, fitted_on=40)
    with pytest.raises(ConfigError, match="stores thresholds for precision 0.9, 0.999; use one of them, or find"):
        stored_threshold(parse_abstain("precision:0.97"), table, "m.ckpt")
    with pytest.raises(ConfigError, match="on its 40 val images m.ckpt never reached precision 0.999"):
        stored_threshold(parse_abstain("precision:0.999"), table, "m.ckpt")
    with pytest.raises(ConfigError, match="m.ckpt has no thresholds fitted on val"):
        stored_threshold(parse_abstain("precision:0.9"), Calibration(), "m.ckpt")
    assert stored_threshold(parse_abstain("0.3"), Calibration(), "m.ckpt") == 0.3


def test_unknown_in_text_json_and_csv():
    preds = [Prediction("a.jpg", ["daisy", "rose"], [0.4, 0.3], [0, 1], unknown=True),
             Prediction("b.jpg", ["rose", "daisy"], [0.9, 0.1], [1, 0]), Prediction("c.jpg", error="broken")]
    assert format_predictions(preds).splitlines()[0] == "a.jpg: unknown (daisy 40.0%, rose 30.0%)"
    got = json.loads(format_predictions(preds, "json"))
    assert [g["answer"] for g in got] == ["unknown", "rose", None] and got[0]["top"][0]["label"] == "daisy"
    rows = format_predictions(preds, "csv").splitlines()
    assert rows[0] == "path,rank,label,prob,error,answer" and rows[1].endswith(",unknown") and rows[3].endswith(",rose")


def test_predict_abstains_below_the_threshold(trained, capsys):
    data, ckpt = trained
    files = sorted((data / "class_0").glob("*.jpg"))[:4]
    plain = Predictor.from_checkpoint(ckpt).predict(files)
    tops = sorted(p.probs[0] for p in plain)
    cut = (tops[1] + tops[2]) / 2
    preds = Predictor.load(ckpt, abstain=cut).predict(files)
    assert [p.unknown for p in preds] == [p.probs[0] < cut for p in plain] and sum(p.unknown for p in preds) == 2
    assert main(["predict", str(ckpt), *map(str, files), "--json", "--abstain", "1"]) == 0
    assert {d["answer"] for d in json.loads(capsys.readouterr().out)} == {"unknown"}
    assert main(["predict", str(ckpt), str(files[0]), "--abstain", "precision:0.97"]) == 2
    assert "stores thresholds for precision 0.9, 0.95, 0.98, 0.99, 0.995, 0.999" in capsys.readouterr().err


def test_eval_reports_coverage_and_finds_a_precision_threshold_on_its_data(trained, tmp_path):
    data, ckpt = trained
    state = load_checkpoint(ckpt)
    state["calibration"]["abstain"] = {}  # no stored table: eval finds the threshold on the data it evaluates
    bare = save_checkpoint(state, tmp_path / "bare.ckpt")
    report, out = evaluate(bare, data, out_dir=tmp_path / "ev", workers=0, progress=False, abstain="precision:0.9")
    conf = report.confidence
    assert conf.threshold is not None and "found on this data" in conf.threshold_rule
    if conf.coverage > 0:
        assert conf.covered_accuracy >= 0.9
    saved = json.loads((out / "report.json").read_text())["confidence"]
    assert saved["abstain"]["coverage"] == conf.coverage and "0.9" in saved["precision_thresholds"]
    report, _ = evaluate(ckpt, data, out_dir=tmp_path / "ev2", workers=0, progress=False, abstain="0")
    assert report.confidence.coverage == 1.0 and report.confidence.covered_accuracy == pytest.approx(report.top1)
    assert "answered 100.00%" in report.to_text()
