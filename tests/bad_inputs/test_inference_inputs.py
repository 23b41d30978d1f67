"""`imgcls eval`, `predict` and `cache` attacked as a careless user would: exact preprocessing unless
asked otherwise, unreadable files stop eval before any work (or are skipped and counted), file names
that are not UTF-8 never crash a report, and every mistake is one line and exit 2."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.checkpoint import load_model
from imgcls.cli import build_parser
from imgcls.data import eval_transform, normalize_batch
from imgcls.data.cache import DecodedCache, human_size
from tests.conftest import error_line, make_tiny_folder, run_cli, train_tiny

NOT_UTF8 = b"bad\xff.jpg"  # a Latin-1 name, as old cameras and zip files leave behind


cli, one_error_line = run_cli, error_line


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, best.ckpt) of a 1-epoch run on 3 classes x 12 images."""
    return train_tiny(tmp_path_factory.mktemp("infer"))


@pytest.fixture
def data_copy(trained, tmp_path):
    return shutil.copytree(trained[0], tmp_path / "data")


# -- 1. exact eval preprocessing unless --draft ------------------------------------------------------

def big_photo(path) -> None:
    """1024x768 with fine detail: JPEG draft mode (1/8 scale) and a full decode + resize differ on it."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    stripes = (np.indices((768, 1024)).sum(0) % 3 == 0)[..., None] * np.uint8(60)
    Image.fromarray(blocks // 2 + stripes).save(path, quality=95)


def reference_logits(ckpt, paths) -> torch.Tensor:
    """torchvision's eval on what plain Pillow decodes at full size, by hand."""
    model, state = load_model(ckpt)
    pre = state["preprocessing"]
    tf = eval_transform(resize=pre["resize"], crop=pre["crop"], interpolation=pre["interpolation"], uint8=True)
    batch = torch.from_numpy(np.stack([tf(Image.open(p).convert("RGB")) for p in paths]))
    with torch.no_grad():
        return model.eval()(normalize_batch(batch, pre["mean"], pre["std"]))


def test_predict_decodes_big_jpegs_exactly_unless_draft(trained, tmp_path, capsys):
    _, ckpt = trained
    big_photo(tmp_path / "big.jpg")
    want = reference_logits(ckpt, [tmp_path / "big.jpg"])[0].softmax(0).tolist()

    def probs(*flags) -> list[float]:
        assert cli(["predict", ckpt, tmp_path / "big.jpg", "--json", "--topk", "3", *flags]) == 0
        top = json.loads(capsys.readouterr().out)[0]["top"]
        return [t["prob"] for t in sorted(top, key=lambda t: t["index"])]

    assert probs() == pytest.approx(want, abs=2e-6)  # JSON keeps 6 decimals
    assert probs("--no-draft") == probs()
    assert max(abs(a - b) for a, b in zip(probs("--draft"), want)) > 1e-4


def test_eval_decodes_big_jpegs_exactly_unless_draft(trained, tmp_path, capsys):
    _, ckpt = trained
    data = make_tiny_folder(tmp_path / "d", classes=3, per_class=1)
    big_photo(data / "class_0" / "img_000.jpg")
    files = sorted(data.rglob("*.jpg"))
    want = float(torch.nn.functional.cross_entropy(reference_logits(ckpt, files), torch.tensor([0, 1, 2])))

    def loss(*flags) -> float:
        assert cli(["eval", ckpt, data, "-o", tmp_path / "e", "--workers", "0", *flags]) == 0
        capsys.readouterr()
        return json.loads((tmp_path / "e" / "report.json").read_text())["loss"]

    assert loss() == pytest.approx(want, rel=1e-5)
    assert loss("--draft") != pytest.approx(want, rel=1e-4)


# -- 2. unreadable files: stop before any work, or --skip-bad ------------------------------------------

def test_eval_stops_before_any_work_on_unreadable_images(trained, data_copy, tmp_path, capsys):
    _, ckpt = trained
    for name in ("broken.jpg", "empty.jpg"):
        (data_copy / "class_1" / name).write_bytes(b"nope" if name == "broken.jpg" else b"")
    assert cli(["eval", ckpt, data_copy, "-o", tmp_path / "e", "--workers", "0"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("imgcls: error: 2 unreadable image(s) in ")
    assert str(data_copy / "class_1" / "broken.jpg") in line and str(data_copy / "class_1" / "empty.jpg") in line
    assert line.endswith("or pass --skip-bad")
    assert not (tmp_path / "e").exists()


def test_eval_skip_bad_leaves_them_out_and_says_so(trained, data_copy, tmp_path, capsys):
    _, ckpt = trained
    (data_copy / "class_1" / "broken.jpg").write_bytes(b"nope")
    assert cli(["eval", ckpt, data_copy, "-o", tmp_path / "e", "--workers", "0", "--skip-bad"]) == 0
    said = f"skipped 1 unreadable image(s): {data_copy / 'class_1' / 'broken.jpg'}"
    assert said in capsys.readouterr().err.splitlines()
    assert said in (tmp_path / "e" / "report.txt").read_text().splitlines()
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["n"] == 36 and report["skipped"] == [str(data_copy / "class_1" / "broken.jpg")]


def test_eval_with_no_readable_image_at_all(trained, tmp_path, capsys):
    _, ckpt = trained
    for k in range(3):
        (tmp_path / "d" / f"class_{k}").mkdir(parents=True)
        (tmp_path / "d" / f"class_{k}" / "x.jpg").write_bytes(b"")
    assert cli(["eval", ckpt, tmp_path / "d", "--skip-bad", "--workers", "0"]) == 2
    assert one_error_line(capsys) == f"imgcls: error: {tmp_path / 'd'}: no readable image to evaluate"


def test_predict_reports_unreadable_files_or_skips_them(trained, tmp_path, capsys):
    data, ckpt = trained
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    good = data / "class_0" / "img_000.jpg"
    assert cli(["predict", ckpt, good, tmp_path / "broken.jpg"]) == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'broken.jpg'}: error: " in captured.out
    assert captured.err.strip() == "imgcls: 1 of 2 file(s) could not be read; --skip-bad leaves them out"
    assert cli(["predict", ckpt, good, tmp_path / "broken.jpg", "--skip-bad", "--json"]) == 0
    captured = capsys.readouterr()
    assert [p["path"] for p in json.loads(captured.out)] == [str(good)]
    assert captured.err.strip() == f"imgcls: skipped 1 unreadable image(s): {tmp_path / 'broken.jpg'}"


# -- 3. top-k ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", ["0", "-2"])
def test_topk_below_one_is_one_line(trained, capsys, k):
    data, ckpt = trained
    assert cli(["predict", ckpt, data / "class_0" / "img_000.jpg", "--topk", k]) == 2
    # refused while parsing, like every ranged option: the range lives on PredictOptions.topk
    assert one_error_line(capsys) == f"imgcls predict: error: argument --topk: {k}: must be >= 1"


def test_topk_above_the_class_count_is_clamped_and_said(trained, capsys):
    data, ckpt = trained
    assert cli(["predict", ckpt, data / "class_0" / "img_000.jpg", "--topk", "10", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "imgcls: --topk 10 > 3 classes; showing 3"
    assert len(json.loads(captured.out)[0]["top"]) == 3


def test_eval_of_three_classes_reports_no_top5(trained, tmp_path, capsys):
    data, ckpt = trained
    assert cli(["eval", ckpt, data, "-o", tmp_path / "e", "--workers", "0"]) == 0
    assert "top-5" not in capsys.readouterr().out and "top-5" not in (tmp_path / "e" / "report.txt").read_text()
    assert "top5" not in json.loads((tmp_path / "e" / "report.json").read_text())


# -- 4. file names that are not UTF-8 ----------------------------------------------------------------

def test_names_that_are_not_utf8_are_escaped_in_every_report(trained, data_copy, tmp_path, capsys):
    _, ckpt = trained
    for k in range(3):  # the same photo in every class: at least two of the three are mistakes
        target = os.path.join(os.fsencode(data_copy / f"class_{k}"), NOT_UTF8)
        shutil.copy(data_copy / "class_0" / "img_000.jpg", target)
    assert cli(["eval", ckpt, data_copy, "-o", tmp_path / "e", "--workers", "0", "--wrong", "100"]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "e" / "report.txt").read_text(encoding="utf-8")
    assert text.count("bad\\xff.jpg") >= 2 and text.strip() in printed
    report = json.loads((tmp_path / "e" / "report.json").read_text(encoding="utf-8"))
    assert sum(m["sample"].endswith("bad\\xff.jpg") for m in report["most_confident_wrong"]) >= 2
    assert (tmp_path / "e" / "confusion_matrix.csv").read_text(encoding="utf-8").startswith("true\\pred,")

    bad = os.fsdecode(os.path.join(os.fsencode(data_copy / "class_1"), NOT_UTF8))
    shown = bad.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    assert cli(["predict", ckpt, bad, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == shown
    assert cli(["predict", ckpt, bad, "--csv"]) == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out)))[1][0] == shown
    assert cli(["predict", ckpt, bad]) == 0
    assert capsys.readouterr().out.startswith(f"{shown}: ")


def test_an_unreadable_file_with_such_a_name_is_listed_escaped(trained, data_copy, tmp_path, capsys):
    _, ckpt = trained
    with open(os.path.join(os.fsencode(data_copy / "class_2"), NOT_UTF8), "wb") as f:
        f.write(b"nope")
    assert cli(["eval", ckpt, data_copy, "-o", tmp_path / "e", "--workers", "0"]) == 2
    assert "bad\\xff.jpg" in one_error_line(capsys)
    assert cli(["eval", ckpt, data_copy, "-o", tmp_path / "e", "--workers", "0", "--skip-bad"]) == 0
    assert "skipped 1 unreadable image(s): " in (tmp_path / "e" / "report.txt").read_text(encoding="utf-8")


# -- 6. the decoded cache ----------------------------------------------------------------------------

def test_cache_list_and_clear(tmp_path, capsys):
    data = make_tiny_folder(tmp_path / "d", classes=2, per_class=3)
    cache = DecodedCache(sorted(data.rglob("*.jpg")), side=32, cache_dir=tmp_path / "c")
    size = cache.data_path.stat().st_size + cache.index_path.stat().st_size
    assert cli(["cache", "--list", "--dir", tmp_path / "c"]) == 0
    first, last = capsys.readouterr().out.splitlines()
    assert first.startswith(f"{cache.key}  ") and first.endswith(f"  6 images from {data.resolve()}")
    assert last == f"1 decoded cache(s), {human_size(size)}, in {tmp_path / 'c'}; imgcls cache --clear removes them"
    assert cli(["cache", "--clear", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out == f"removed 2 file(s) from {tmp_path / 'c'}, {human_size(size)} freed\n"
    assert not list((tmp_path / "c").iterdir())
    assert cli(["cache", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out == f"0 decoded cache(s), 0 B, in {tmp_path / 'c'}\n"


def test_cache_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli(["cache", "--clear", "--dir", tmp_path / "file"]) == 2
    assert one_error_line(capsys) == (f"imgcls: error: {tmp_path / 'file'}: not a folder; "
                                      "give the decoded-cache folder with --dir")
    assert (tmp_path / "file").is_file()


# -- 7, 8. --version, help, bad values ---------------------------------------------------------------

def test_version(capsys):
    import imgcls

    assert cli(["--version"]) == 0
    assert capsys.readouterr().out == f"imgcls {imgcls.__version__}\n"


@pytest.mark.parametrize("command", sorted(next(a for a in build_parser()._actions if a.dest == "command").choices))
def test_every_option_has_help(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    assert [a.dest for a in sub._actions if not a.help] == []


@pytest.mark.parametrize("value, says", [
    ("[false,true,true]", "replace_stride_with_dilation needs Bottleneck blocks (resnet50 and deeper"),
    ("true", "replace_stride_with_dilation takes 3 booleans (layer2, layer3, layer4), got True"),
])
def test_a_dilation_the_model_cannot_take_is_one_line(capsys, value, says):
    assert cli(["summary", "resnet18", "--model-kw", f"replace_stride_with_dilation={value}"]) == 2
    line = one_error_line(capsys)
    assert says in line and "Traceback" not in line


@pytest.mark.parametrize("argv, says", [
    (["eval", "CKPT", "DATA", "--batch-size", "0"], "--batch-size: 0: must be >= 1"),
    (["eval", "CKPT", "DATA", "--workers", "-1"], "--workers: -1: must be >= 0"),
    (["eval", "CKPT", "DATA", "--wrong", "-1"], "--wrong: -1: must be >= 0"),
    (["eval", "CKPT", "DATA", "--part", "tran"], "--part: 'tran': must be one of train, val, test"),
    (["predict", "CKPT", "x.jpg", "--batch-size", "0"], "--batch-size: 0: must be >= 1"),
    (["predict", "CKPT", "x.jpg", "--device", "gpu"], "unknown --device 'gpu'"),
    (["eval", "CKPT", "missing-folder"], "missing-folder"),
    (["cache", "--list", "--clear"], "not allowed with argument"),
    (["split", "DATA", "-o", "elsewhere", "--seed", "-1"], "--seed: -1: must be >= 0"),
    (["summary", "resnet18", "--depth", "-1"], "--depth: -1: must be >= 1"),
    (["summary", "resnet18", "--input", "0"], "--input: 0: must be >= 1"),
])
def test_bad_values_are_refused_with_exit_2(trained, capsys, argv, says):
    data, ckpt = trained
    argv = [str(ckpt) if a == "CKPT" else str(data) if a == "DATA" else a for a in argv]
    assert cli(argv) == 2
    line = one_error_line(capsys)
    assert says in line and "Traceback" not in line
