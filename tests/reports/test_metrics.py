import csv
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgcls.errors import ConfigError
from imgcls.reports import MetricsLog, classification_report, confusion_matrix, reported_ks, topk_correct

PNG = b"\x89PNG\r\n\x1a\n"
CLASSES = ["daisy", "roses", "tulips"]
# Six samples, three classes. Predictions (argmax) are [0, 1, 1, 1, 0, 0]; class 2 is never predicted.
PROBS = torch.tensor([[0.8, 0.1, 0.1],     # true 0, right
                      [0.3, 0.6, 0.1],     # true 0, wrong at 0.6 (2nd guess right)
                      [0.2, 0.7, 0.1],     # true 1, right
                      [0.1, 0.8, 0.1],     # true 1, right
                      [0.9, 0.06, 0.04],   # true 2, wrong at 0.9 (true class last)
                      [0.5, 0.2, 0.3]])    # true 2, wrong at 0.5 (2nd guess right)
TARGETS = torch.tensor([0, 0, 1, 1, 2, 2])
PATHS = [f"img{i}.jpg" for i in range(6)]


def test_topk_correct_and_clipping():
    logits = PROBS.log()
    assert topk_correct(logits, TARGETS, (1, 2, 3, 5)) == {1: 3, 2: 5, 3: 6, 5: 6}
    assert topk_correct(logits, TARGETS) == {1: 3, 5: 6}  # top-5 of 3 classes = every sample
    with pytest.raises(ValueError, match="k >= 1"):
        topk_correct(logits, TARGETS, (0,))
    with pytest.raises(ValueError, match="targets"):
        topk_correct(logits, TARGETS[:5])


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 1, 0, 0]), TARGETS, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]  # rows true, columns predicted
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_precision_recall_f1_hand_computed():
    r = classification_report(PROBS.log(), TARGETS, CLASSES)
    assert r.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert r.precision == pytest.approx([1 / 3, 2 / 3, 0.0])  # class 2 never predicted: 0/0 -> 0
    assert r.recall == pytest.approx([1 / 2, 1.0, 0.0])
    assert r.f1 == pytest.approx([0.4, 0.8, 0.0])
    assert r.support == [2, 2, 2]
    assert (r.macro_precision, r.macro_recall, r.macro_f1) == pytest.approx((1 / 3, 0.5, 0.4))
    assert (r.top1_correct, r.top5_correct, r.n) == (3, 6, 6)
    assert (r.top1, r.top5) == pytest.approx((0.5, 1.0))
    assert r.loss == pytest.approx(F.cross_entropy(PROBS.log(), TARGETS).item(), rel=1e-6)


def test_probabilities_give_the_same_report_as_logits():
    a = classification_report(PROBS.log() + 3.0, TARGETS, CLASSES)
    b = classification_report(PROBS, TARGETS, CLASSES)
    assert b.loss == pytest.approx(-PROBS[range(6), TARGETS].log().mean().item(), rel=1e-6)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    assert a.f1 == b.f1 and a.confusion.tolist() == b.confusion.tolist()
    assert [m.prob for m in a.most_confident_wrong] == pytest.approx([m.prob for m in b.most_confident_wrong])


def test_zero_support_class_counts_as_zero_in_macro():
    probs = torch.cat([PROBS, torch.zeros(6, 1)], 1)  # a fourth class with no sample and no prediction
    r = classification_report(probs, TARGETS, [*CLASSES, "sunflowers"])
    assert (r.precision[3], r.recall[3], r.f1[3], r.support[3]) == (0.0, 0.0, 0.0, 0)
    assert r.macro_f1 == pytest.approx((0.4 + 0.8) / 4)


def test_most_confident_wrong_order_and_names():
    r = classification_report(PROBS, TARGETS, CLASSES, paths=PATHS)
    assert [(m.sample, m.true, m.pred) for m in r.most_confident_wrong] == [
        ("img4.jpg", "tulips", "daisy"), ("img1.jpg", "daisy", "roses"), ("img5.jpg", "tulips", "daisy")]
    assert [m.prob for m in r.most_confident_wrong] == pytest.approx([0.9, 0.6, 0.5])
    r = classification_report(PROBS, TARGETS, CLASSES, n_wrong=2)
    assert [m.sample for m in r.most_confident_wrong] == [4, 1]  # indices without paths


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        classification_report(PROBS, TARGETS, [*CLASSES, "x"])
    with pytest.raises(ValueError, match="paths"):
        classification_report(PROBS, TARGETS, CLASSES, paths=PATHS[:2])
    with pytest.raises(ValueError, match="no samples"):
        classification_report(PROBS[:0], TARGETS[:0], CLASSES)


def test_reported_ks():
    assert reported_ks(2) == (1,) and reported_ks(5) == (1,) and reported_ks(6) == (1, 5)
    assert reported_ks(1000, ks=(1, 3, 5)) == (1, 3, 5) and reported_ks(4, ks=(1, 3, 5)) == (1, 3)


def test_to_text():
    text = classification_report(PROBS, TARGETS, CLASSES, paths=PATHS).to_text()
    assert all(c in text for c in CLASSES) and "macro avg" in text
    assert "top-1 50.00% (3/6)   loss" in text and "top-5" not in text  # 3 classes: top-5 is always 100%
    r = classification_report(PROBS, TARGETS, CLASSES)
    assert f"balanced accuracy {r.macro_recall:.2%} (the mean of the classes' recalls)   macro-F1 {r.macro_f1:.2%}" \
        in text and r.to_dict()["balanced_accuracy"] == r.macro_recall
    assert "img4.jpg" in text.split("most confident mistakes")[1]
    table = text.splitlines()[:5]  # header, three classes, macro avg: columns aligned
    assert len({len(line) for line in table}) == 1 and table[4].startswith("macro avg")


def test_top5_is_reported_only_with_more_than_five_classes():
    six = torch.cat([PROBS, torch.zeros(6, 3)], 1)
    r = classification_report(six, TARGETS, [*CLASSES, "a", "b", "c"])
    assert "top-5 100.00% (6/6)" in r.to_text() and r.to_dict()["top5_correct"] == 6
    five = classification_report(six[:, :5], TARGETS, [*CLASSES, "a", "b"])
    assert "top-5" not in five.to_text() and "top5" not in five.to_dict()


def test_save_writes_json_csv_png(tmp_path):
    r = classification_report(PROBS, TARGETS, CLASSES, paths=PATHS)
    out = r.save(tmp_path / "eval")
    assert (out / "report.txt").read_text(encoding="utf-8") == r.to_text() + "\n"
    assert sorted(f.name for f in out.iterdir()) == ["confusion_matrix.csv", "confusion_matrix.png", "report.json",
                                                      "report.txt"]  # no temporary file left behind
    data = json.loads((out / "report.json").read_text())
    assert data["top1"] == 0.5 and data["top1_correct"] == 3 and data["classes"] == CLASSES
    assert "top5" not in data and data["skipped"] == []
    assert data["per_class"][1] == {"class": "roses", "precision": pytest.approx(2 / 3), "recall": 1.0,
                                    "f1": pytest.approx(0.8), "support": 2}
    assert data["most_confident_wrong"][0]["sample"] == "img4.jpg"
    with (out / "confusion_matrix.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\pred", *CLASSES]
    assert rows[1:] == [["daisy", "1", "1", "0"], ["roses", "0", "2", "0"], ["tulips", "2", "0", "0"]]
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG


def test_names_that_are_not_utf8_are_written_escaped(tmp_path):
    bad_file, bad_class = os.fsdecode(b"/data/x/bad\xff.jpg"), os.fsdecode(b"ros\xe9s")  # Latin-1 names
    r = classification_report(PROBS, TARGETS, ["daisy", bad_class, "tulips"], paths=[bad_file] * 6)
    r.skipped = [os.fsdecode(b"/data/x/gone\xfe.jpg")]
    out = r.save(tmp_path / "eval")
    text = (out / "report.txt").read_text(encoding="utf-8")
    assert "predicted ros\\xe9s: /data/x/bad\\xff.jpg" in text
    assert "skipped 1 unreadable image(s): /data/x/gone\\xfe.jpg" in text
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["classes"][1] == "ros\\xe9s" and data["most_confident_wrong"][0]["sample"] == "/data/x/bad\\xff.jpg"
    header = (out / "confusion_matrix.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "true\\pred,daisy,ros\\xe9s,tulips"
    log = MetricsLog(tmp_path / "metrics.csv", ["epoch", "note"])
    log.append({"epoch": 1, "note": bad_file})
    assert log.read() == [{"epoch": 1, "note": "/data/x/bad\\xff.jpg"}]


def test_skipped_files_are_counted_in_text_and_json():
    r = classification_report(PROBS, TARGETS, CLASSES)
    r.skipped = [f"/d/broken{i}.jpg" for i in range(7)]
    line = next(x for x in r.to_text().splitlines() if x.startswith("skipped"))
    assert line == "skipped 7 unreadable image(s): " + ", ".join(f"/d/broken{i}.jpg" for i in range(5)) + ", ..."
    assert r.to_dict()["skipped"] == r.skipped


def test_metrics_log_append_resume_read(tmp_path):
    path = tmp_path / "runs" / "exp1" / "metrics.csv"  # parent folders do not exist yet
    log = MetricsLog(path, ["epoch", "train_loss", "val_top1", "lr"])
    log.append({"epoch": 1, "train_loss": 1.5, "val_top1": torch.tensor(0.25), "lr": 0.1})
    log.append({"epoch": 2, "train_loss": 1.25, "lr": np.float64(0.01)})  # val_top1 missing
    resumed = MetricsLog(path, ["epoch", "train_loss", "val_top1", "lr"])
    resumed.append({"epoch": 3, "train_loss": 1.0, "val_top1": 0.5, "lr": 0.001})
    assert path.read_text().count("epoch") == 1
    rows = resumed.read()
    assert [r["epoch"] for r in rows] == [1, 2, 3] and isinstance(rows[0]["epoch"], int)
    assert rows[0] == {"epoch": 1, "train_loss": 1.5, "val_top1": 0.25, "lr": 0.1}
    assert math.isnan(rows[1]["val_top1"]) and rows[2]["lr"] == 0.001
    assert MetricsLog(tmp_path / "new.csv").read() == []


def test_metrics_log_refuses_other_header_and_unknown_column(tmp_path):
    path = tmp_path / "metrics.csv"
    MetricsLog(path, ["epoch", "loss"]).append({"epoch": 1, "loss": 2.0})
    with pytest.raises(ConfigError, match="differ"):
        MetricsLog(path, ["epoch", "val_loss"])
    with pytest.raises(ValueError, match="unknown metrics column"):
        MetricsLog(path, ["epoch", "loss"]).append({"epoch": 2, "los": 1.0})
