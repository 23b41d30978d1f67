import json
import os

import pytest
import torch
from PIL import Image

from imgcls.cli import main
from imgcls.errors import ConfigError, DataError
from imgcls.inference import Prediction, Predictor, evaluate, expand_inputs
from tests.conftest import make_tiny_folder, train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("pred"))


def test_every_image_is_predicted_in_batches_and_bad_files_are_reported(trained, tmp_path):
    data, ckpt = trained
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    files = sorted((data / "class_0").glob("*.jpg"))[:6] + [tmp_path / "broken.jpg"]
    predictor = Predictor.from_checkpoint(ckpt, batch_size=4)
    preds = predictor.predict(files, topk=2)
    assert [p.source for p in preds] == [str(f) for f in files]  # 7 images, batches of 4: none dropped
    assert all(len(p.labels) == 2 and abs(sum(p.probs) - 1) < 1.0 for p in preds[:-1])
    assert preds[-1].error and "broken.jpg" in preds[-1].error and preds[-1].labels == []
    # the same image as a PIL image gives the same answer as its path
    pil = predictor.predict(Image.open(files[0]), topk=2)[0]
    assert pil.labels == preds[0].labels and pil.probs == pytest.approx(preds[0].probs, abs=1e-5)


def test_predictions_equal_the_models_own_eval_forward(trained):
    data, ckpt = trained
    predictor = Predictor.from_checkpoint(ckpt)
    path = sorted((data / "class_2").glob("*.jpg"))[0]
    got = predictor.predict([path], topk=3)[0]
    from imgcls.data import eval_transform, load_image

    x = eval_transform(resize=37, crop=32)(load_image(path))[None]
    with torch.no_grad():
        probs = (predictor.model(x) / predictor.temperature).softmax(1)[0]  # the val-fitted temperature
    assert got.probs == pytest.approx(sorted(probs.tolist(), reverse=True), abs=1e-5)


def test_expand_inputs(tmp_path):
    make_tiny_folder(tmp_path / "d", classes=2, per_class=2)
    assert len(expand_inputs([tmp_path / "d"])) == 4
    assert len(expand_inputs([str(tmp_path / "d" / "class_1" / "*.jpg")])) == 2
    with pytest.raises(DataError, match="matches no files"):
        expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(DataError, match="no such file or folder"):
        expand_inputs([tmp_path / "missing.jpg"])


def test_evaluate_writes_the_report_and_refuses_other_classes(trained, tmp_path):
    data, ckpt = trained
    report, out = evaluate(ckpt, data, out_dir=tmp_path / "ev", workers=0, progress=False)
    assert report.n == 36 and (out / "confusion_matrix.png").is_file() and (out / "report.json").is_file()
    other = make_tiny_folder(tmp_path / "other", classes=2, per_class=2)
    with pytest.raises(DataError, match="has 2 classes .* was trained on 3"):
        evaluate(ckpt, other, workers=0, progress=False)


def test_cli_predict_json_and_eval(trained, tmp_path, capsys):
    data, ckpt = trained
    assert main(["predict", str(ckpt), str(data / "class_1"), "--json", "--topk", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 12 and out[0]["top"][0]["label"] in ("class_0", "class_1", "class_2")
    assert main(["eval", str(ckpt), str(data), "-o", str(tmp_path / "e"), "--workers", "0"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "missing.ckpt"), "x.jpg"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_full_decode_by_default_and_draft_reduces_big_jpegs(trained, tmp_path):
    _, ckpt = trained
    big = tmp_path / "big.jpg"  # shorter side 200 >= 2 x the checkpoint's resize (37): draft applies
    Image.effect_noise((300, 200), 60).convert("RGB").save(big, quality=90)
    from imgcls.data import eval_transform, load_image

    full = eval_transform(resize=37, crop=32)(load_image(big))[None]
    exact, drafted = Predictor.from_checkpoint(ckpt), Predictor.from_checkpoint(ckpt, draft=True)
    assert exact.min_side is None and drafted.min_side == 37
    with torch.no_grad():
        want = exact.probabilities(exact.model(full))[0]  # softmax(logits / the val-fitted temperature)
    assert exact.predict([big], topk=3)[0].probs == pytest.approx(sorted(want.tolist(), reverse=True), abs=1e-5)
    assert drafted.predict([big], topk=3)[0].probs != pytest.approx(sorted(want.tolist(), reverse=True), abs=1e-6)


def test_topk_is_checked_and_clamped(trained):
    data, ckpt = trained
    predictor = Predictor.from_checkpoint(ckpt)
    path = sorted((data / "class_0").glob("*.jpg"))[0]
    for k in (0, -1):
        with pytest.raises(ConfigError, match="topk must be >= 1"):
            predictor.predict([path], topk=k)
    assert len(predictor.predict([path], topk=10)[0].labels) == 3  # three classes


def test_prediction_to_dict_escapes_names_that_are_not_utf8():
    name = os.fsdecode(b"/photos/bad\xff.jpg")
    d = Prediction(name, ["daisy"], [0.5], [0]).to_dict()
    assert d["path"] == "/photos/bad\\xff.jpg"
    json.dumps(d, ensure_ascii=False).encode("utf-8")  # no surrogate left to refuse
