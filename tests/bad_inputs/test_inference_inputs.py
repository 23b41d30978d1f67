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

from imgcls.checkpoint import load_checkpoint, load_model
from imgcls.cli import build_parser
from imgcls.data import Resize, eval_transform, normalize_batch
from imgcls.data.cache import DecodedCache, human_size
from imgcls.data.transforms import image_size
from tests.conftest import error_line, flat_jpeg, make_tiny_folder, run_cli, train_tiny

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
    t = load_checkpoint(ckpt)["calibration"]["temperature"]  # predict's probabilities: softmax(logits / T)
    want = (reference_logits(ckpt, [tmp_path / "big.jpg"])[0] / t).softmax(0).tolist()

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


def test_a_huge_jpeg_is_classified_from_a_reduced_decode(trained, tmp_path, capsys, monkeypatch):
    """20000 x 20000 px (1.2 GB as RGB, 4.5 x Pillow's bomb limit): predict, eval and cam decode it at 1/8
    scale, 2500 x 2500 (19 MB), and never hold it at full size."""
    _, ckpt = trained
    data = make_tiny_folder(tmp_path / "d", classes=3, per_class=1)
    huge = flat_jpeg(data / "class_0" / "huge.jpg", 20000, 20000)
    seen = []  # the size of every image the eval transform gets: the decode's output
    resize = Resize.__call__
    monkeypatch.setattr(Resize, "__call__", lambda self, img: seen.append(image_size(img)) or resize(self, img))
    assert cli(["predict", ckpt, huge, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["error"] is None and seen == [(2500, 2500)]
    assert cli(["cam", ckpt, huge, "-o", tmp_path / "cam"]) == 0 and (tmp_path / "cam" / "huge.cam.png").is_file()
    assert seen[1:] == [(2500, 2500)]
    seen.clear()
    assert cli(["eval", ckpt, data, "-o", tmp_path / "e", "--workers", "0"]) == 0
    assert sorted(seen) == [(48, 40), (48, 40), (48, 40), (2500, 2500)]
    capsys.readouterr()


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


def test_predict_names_a_broken_link_in_a_folder(trained, tmp_path, capsys):
    _, ckpt = trained
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "x.jpg").symlink_to("missing.jpg")
    assert cli(["predict", ckpt, tmp_path / "photos"]) == 1
    captured = capsys.readouterr()
    link = tmp_path / "photos" / "x.jpg"
    assert captured.out.startswith(f"{link}: error: ") and f"{link}: broken symbolic link -> missing.jpg" in captured.out
    assert captured.err.strip() == "imgcls: 1 of 1 file(s) could not be read; --skip-bad leaves them out"


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


# -- 5. Grad-CAM overlays ---------------------------------------------------------------------------

def test_cam_into_a_file_is_one_line(trained, tmp_path, capsys):
    data, ckpt = trained
    (tmp_path / "existing_file.txt").write_text("mine")
    assert cli(["cam", ckpt, data / "class_0" / "img_000.jpg", "-o", tmp_path / "existing_file.txt"]) == 2
    assert one_error_line(capsys, only=True) == (f"imgcls: error: -o {tmp_path / 'existing_file.txt'} is a file; "
                                                 "name a folder for the overlays")
    assert (tmp_path / "existing_file.txt").read_text() == "mine"


@pytest.mark.parametrize("npy", [False, True])
def test_cam_never_overwrites_an_earlier_overlay_without_force(trained, tmp_path, capsys, npy):
    data, ckpt = trained
    photo, out = data / "class_0" / "img_000.jpg", tmp_path / "out"
    out.mkdir()
    mine = out / ("img_000.cam.npy" if npy else "img_000.cam.png")
    mine.write_text("mine")
    flags = ["--save-npy"] if npy else []
    assert cli(["cam", ckpt, photo, data / "class_1" / "img_000.jpg", "-o", out, *flags]) == 2
    assert one_error_line(capsys, only=True) == (f"imgcls: error: {mine} exists already (an earlier imgcls cam?); "
                                                 "pass --force to replace it, or choose another -o")
    assert mine.read_text() == "mine" and sorted(out.iterdir()) == [mine]  # refused before any work
    assert cli(["cam", ckpt, photo, "-o", out, *flags, "--force"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-> {out / 'img_000.cam.png'}")
    assert mine.read_bytes() != b"mine"


def test_cam_with_an_empty_layer_name_is_refused(trained, tmp_path, capsys):
    data, ckpt = trained
    assert cli(["cam", ckpt, data / "class_0" / "img_000.jpg", "-o", tmp_path / "out", "--layer", ""]) == 2
    assert one_error_line(capsys, only=True) == ("imgcls: error: --layer '': empty; name a module such as layer4, "
                                                 "or leave --layer out for the model's own choice")
    assert not (tmp_path / "out").exists()


# -- 6. the decoded cache ----------------------------------------------------------------------------

def test_cache_list_and_clear(tmp_path, capsys):
    data = make_tiny_folder(tmp_path / "d", classes=2, per_class=3)
    cache = DecodedCache(sorted(data.rglob("*.jpg")), side=32, cache_dir=tmp_path / "c")
    key, size = cache.key, cache.data_path.stat().st_size + cache.index_path.stat().st_size
    del cache  # as when the run that built it has ended
    assert cli(["cache", "--list", "--dir", tmp_path / "c"]) == 0
    first, last = capsys.readouterr().out.splitlines()
    assert first.startswith(f"{key}  ") and first.endswith(f"  6 images from {data.resolve()}")
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


@pytest.mark.parametrize("what", ["--list", "--clear"])
def test_cache_dir_that_does_not_exist_is_one_line(tmp_path, capsys, what):
    assert cli(["cache", what, "--dir", tmp_path / "missing"]) == 2
    assert one_error_line(capsys, only=True).startswith(f"imgcls: error: {tmp_path / 'missing'}: no such folder; "
                                                        "give the decoded-cache folder with --dir (the default is ")
    assert not (tmp_path / "missing").exists()


def test_cache_clear_keeps_a_cache_in_use(tmp_path, capsys):
    data = make_tiny_folder(tmp_path / "d", classes=2, per_class=3)
    cache = DecodedCache(sorted(data.rglob("*.jpg")), side=32, cache_dir=tmp_path / "c")  # held, as a run holds it
    assert cli(["cache", "--list", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"  6 images from {data.resolve()}, in use by process "
                                                            f"{os.getpid()}")
    assert cli(["cache", "--clear", "--dir", tmp_path / "c"]) == 0
    kept, removed = capsys.readouterr().out.splitlines()
    assert kept.startswith(f"kept {cache.key} (") and kept.endswith(
        f"): in use by process {os.getpid()}; run imgcls cache --clear again once that has finished")
    assert removed == f"removed 0 file(s) from {tmp_path / 'c'}, 0 B freed"
    assert cache.data_path.is_file() and cache.index_path.is_file()
    data_path = cache.data_path
    del cache  # released
    assert cli(["cache", "--clear", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out.startswith(f"removed 2 file(s) from {tmp_path / 'c'}")
    assert not data_path.exists()


def cached_training(tmp_path) -> list:
    """`imgcls train --cache` of one quick epoch on a new 2 x 4 image set."""
    data = make_tiny_folder(tmp_path / "d", classes=2, per_class=4)
    return ["train", data, "--model", "resnet18", "--input-size", "32", "--batch-size", "4", "--workers", "0",
            "--val-fraction", "0.25", "--epochs", "1", "--out-dir", tmp_path / "runs", "--no-progress",
            "--no-tensorboard", "--cache", "--cache-side", "32"]


def test_cache_clear_during_a_training_build_keeps_it(tmp_path, monkeypatch, capsys):
    """`imgcls cache --clear` run just as `imgcls train --cache` has written its cache: the run goes on."""
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    build, said = DecodedCache._build, []

    def build_then_clear(self, *args):
        build(self, *args)
        assert cli(["cache", "--clear"]) == 0  # as another terminal would, the moment the build is done
        said.append(capsys.readouterr().out)

    monkeypatch.setattr(DecodedCache, "_build", build_then_clear)
    assert cli(cached_training(tmp_path)) == 0
    assert len(said) == 2 and all("in use by process" in out and "removed 0 file(s)" in out for out in said)


def test_a_training_run_that_loses_its_cache_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    build = DecodedCache._build

    def build_then_lose(self, *args):
        build(self, *args)
        for path in (self.data_path, self.index_path):  # deleted by hand while the run starts
            path.unlink()

    monkeypatch.setattr(DecodedCache, "_build", build_then_lose)
    assert cli(cached_training(tmp_path)) == 2
    assert one_error_line(capsys).endswith(": the decoded cache was removed while this run used it (deleted by "
                                           "hand?); run again to build it anew, or train without --cache")


def test_cache_list_names_a_damaged_index_and_clear_removes_it(tmp_path, capsys):
    data = make_tiny_folder(tmp_path / "d", classes=2, per_class=3)
    cache = DecodedCache(sorted(data.rglob("*.jpg")), side=32, cache_dir=tmp_path / "c")
    cache.index_path.write_text(json.dumps(json.loads(cache.index_path.read_text()) | {"files": 5}))
    key = cache.key
    del cache
    assert cli(["cache", "--list", "--dir", tmp_path / "c"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"{key}  ") and line.endswith(
        '  damaged: its index\'s "files" is 5, not a list of file paths; imgcls cache --clear removes it')
    assert cli(["cache", "--clear", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out.startswith(f"removed 2 file(s) from {tmp_path / 'c'}")
    assert not list((tmp_path / "c").iterdir())


def test_cache_clear_never_removes_a_file_merely_named_like_a_cache(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    mine = {"0123456789abcdef01234567.json": '{"my": "settings"}', "0123456789abcdef01234567.u8": "raw",
            "89abcdef0123456789abcdef.u8": "raw", "89abcdef0123456789abcdef.tmp1": "notes"}
    for name, text in mine.items():
        (tmp_path / "c" / name).write_text(text)
    assert cli(["cache", "--list", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out == f"0 decoded cache(s), 0 B, in {tmp_path / 'c'}\n"
    assert cli(["cache", "--clear", "--dir", tmp_path / "c"]) == 0
    assert capsys.readouterr().out == f"removed 0 file(s) from {tmp_path / 'c'}, 0 B freed\n"
    assert {p.name: p.read_text() for p in (tmp_path / "c").iterdir()} == mine


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


@pytest.mark.parametrize("change, says", [
    ({"resize": 100000}, "preprocessing.resize 100000: must be between 1 and 4096 px"),
    ({"interpolation": None}, "preprocessing has no interpolation"),
    ({"std": [0.2, 0.2]}, "preprocessing.std [0.2, 0.2]: must be 3 finite numbers, one per RGB channel, each above 0"),
])
@pytest.mark.parametrize("command", ["predict", "eval", "cam"])
def test_a_checkpoint_whose_preprocessing_was_changed_is_one_line(trained, tmp_path, capsys, change, says, command):
    """Checked when the checkpoint is opened, before the network is built or any image is read."""
    data, ckpt = trained
    state = torch.load(ckpt, weights_only=True)
    pre = {k: v for k, v in {**state["preprocessing"], **change}.items() if v is not None}
    tampered = tmp_path / "tampered.ckpt"
    torch.save({**state, "preprocessing": pre}, tampered)
    photo = next((data / "class_0").glob("*.jpg"))
    target = {"predict": [photo], "eval": [data], "cam": [photo, "-o", tmp_path / "cams"]}[command]
    assert cli([command, tampered, *target]) == 2
    assert one_error_line(capsys, only=True) == (f"imgcls: error: {tampered}: {says}; it was changed after imgcls "
                                                 "train wrote it; use a checkpoint as train wrote it")
    assert not (tmp_path / "cams").exists()


@pytest.mark.parametrize("record, says", [
    ({"temperature": 0}, "calibration temperature 0: must be a positive number"),
    ({"temperature": 1.5, "abstain": {"0.99": 7}}, "calibration abstain {'0.99': 7}: must map a precision to a "
                                                   "probability in [0, 1] or null"),
])
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_checkpoint_whose_calibration_was_changed_is_one_line(trained, tmp_path, capsys, record, says, command):
    data, ckpt = trained
    state = torch.load(ckpt, weights_only=True)
    tampered = tmp_path / "tampered.ckpt"
    torch.save({**state, "calibration": record}, tampered)
    target = {"predict": [next((data / "class_0").glob("*.jpg"))], "eval": [data]}[command]
    assert cli([command, tampered, *target]) == 2
    assert one_error_line(capsys, only=True) == (f"imgcls: error: {tampered}: {says}; it was changed after imgcls "
                                                 "train wrote it; use a checkpoint as train wrote it")


@pytest.mark.parametrize("value, says", [
    ("1.5", "--abstain '1.5': the probability must be in [0, 1]"),
    ("recall:0.9", "--abstain 'recall:0.9': use --abstain P"),
    ("precision:0.97", "--abstain precision:0.97: {ckpt} stores thresholds for precision 0.9, 0.95, 0.98, 0.99, "
                       "0.995, 0.999; use one of them"),
])
@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_bad_abstain_is_one_line_before_any_work(trained, capsys, value, says, command):
    data, ckpt = trained
    target = [next((data / "class_0").glob("*.jpg"))] if command == "predict" else ["--port", "1"]
    assert cli([command, ckpt, *target, "--abstain", value]) == 2
    assert one_error_line(capsys, only=True).startswith(f"imgcls: error: {says.format(ckpt=ckpt)}")
