"""Exported .onnx files and `imgcls export` attacked as a careless user (or a tampered download) would: an
exported file's metadata is checked once, when it is opened, like a checkpoint (one line naming the file
and the field; predict, eval and serve refuse it before any image is read); export never overwrites a
file it did not write, removes what an export killed with kill -9 left, and its hints name only its own
flags."""
from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="the export extra is not installed: pip install -e '.[export]'")

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from imgcls.checkpoint import save_checkpoint  # noqa: E402
from imgcls.errors import CheckpointError  # noqa: E402
from imgcls.export import export_onnx  # noqa: E402
from imgcls.inference import Predictor  # noqa: E402
from imgcls.models import create_model  # noqa: E402
from imgcls.serve.service import open_model  # noqa: E402
from tests.conftest import error_line, make_tiny_folder, run_cli  # noqa: E402

CLASSES = ["class_0", "class_1", "class_2"]
PRE = {"resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"}
NO_SUCH_PID = 2**22 + 7  # above Linux's largest process id: a writer that is gone


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(checkpoint, its export, a data folder with its classes): an untrained LeNet-5 (3 classes, 32 px),
    the smallest network there is, exported once for the whole module."""
    root = tmp_path_factory.mktemp("export_inputs")
    torch.manual_seed(0)
    ckpt = save_checkpoint({"arch": {"model": "lenet5", "num_classes": 3, "model_kwargs": {}},
                            "model": create_model("lenet5", num_classes=3).state_dict(),
                            "classes": CLASSES, "preprocessing": PRE}, root / "lenet.ckpt")
    data = make_tiny_folder(root / "data", per_class=2)
    return ckpt, export_onnx(ckpt, root / "lenet.onnx", val=data, check_images=4).path, data


def props_of(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def with_props(model: onnx.ModelProto, props: dict[str, str], path) -> str:
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))
    return str(path)


def tampered(exported, path, **fields) -> str:
    """A copy of the export with metadata `fields` replaced (JSON-encoded unless a str; None removes one)."""
    props = props_of(exported)
    for key, value in fields.items():
        if value is None:
            props.pop(key)
        else:
            props[key] = value if isinstance(value, str) else json.dumps(value)
    return with_props(onnx.load(str(exported)), props, path)


def identity_graph(path, props: dict[str, str]) -> str:
    """Another tool's model: [1, 3] -> [1, 3], with `props` as its metadata."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    return with_props(helper.make_model(graph), props, path)


# each: (metadata changes, what the one line says); every one was a traceback, a hang on memory or a
# silently wrong answer before the file was checked when opened
CASES = {
    "resize_above_max_side": ({"preprocessing": {**PRE, "resize": 5000}},
                              "metadata preprocessing.resize 5000: must be between 1 and 4096 px"),
    "resize_0": ({"preprocessing": {**PRE, "resize": 0}}, "metadata preprocessing.resize 0: must be between 1 and"),
    "resize_missing": ({"preprocessing": {k: v for k, v in PRE.items() if k != "resize"}},
                       "metadata preprocessing has no resize"),
    "preprocessing_not_an_object": ({"preprocessing": [36, 32]}, "metadata preprocessing [36, 32]: must be an object"),
    "classes_not_json": ({"classes": "[class_0, class_1"}, 'metadata classes "[class_0, class_1" is not JSON'),
    "ten_classes_for_3_outputs": ({"classes": [f"c{i}" for i in range(10)]},
                                  "metadata classes names 10 classes, but the model gives 3 logits per image"),
    "classes_a_string": ({"classes": '"daisy"'}, 'metadata classes "daisy": must be a non-empty list of class names'),
    "classes_numbers": ({"classes": [1, 2, 3]}, "metadata classes [1, 2, 3]: must be a non-empty list"),
    "mean_of_one_channel": ({"preprocessing": {**PRE, "mean": [0.5]}},
                            "metadata preprocessing.mean [0.5]: must be 3 finite numbers"),
    "std_zero": ({"preprocessing": {**PRE, "std": [0, 0, 0]}},
                 "metadata preprocessing.std [0, 0, 0]: must be 3 finite numbers, one per RGB channel, each above 0"),
    "std_nan": ({"preprocessing": {**PRE, "std": [float("nan")] * 3}}, "metadata preprocessing.std [NaN, NaN, NaN]"),
    "unknown_interpolation": ({"preprocessing": {**PRE, "interpolation": "lanczos9"}},
                              'metadata preprocessing.interpolation "lanczos9": must be one of bilinear, bicubic'),
    "crop_not_the_graph_input": ({"preprocessing": {**PRE, "resize": 48, "crop": 48}},
                                 "the model takes tensor(float) [batch, 3, 32, 32], but its metadata "
                                 "(preprocessing.crop 48) says"),
    "arch_not_an_object": ({"arch": [1]}, "metadata arch [1]: must be an object naming the model"),
    "unknown_precision": ({"precision": "fp64"}, 'metadata precision "fp64": must be fp32 or int8'),
    "another_format": ({"format": "other-tool"}, 'without imgcls\'s metadata (format "other-tool"): it was not '
                                                 "written by `imgcls export`"),
}
GRAPHS = {  # whole files that are not an imgcls export
    "no_metadata": "an ONNX model without imgcls's metadata (no format, classes, preprocessing): it was not written "
                   "by `imgcls export`",
    "metadata_on_a_rank_2_graph": "the model takes tensor(float) [1, 3], but its metadata (preprocessing.crop 32) says",
}


@pytest.fixture(scope="module")
def bad_files(made, tmp_path_factory):
    """{case: path} for every case of CASES and GRAPHS."""
    _, exported, _ = made
    folder = tmp_path_factory.mktemp("bad_onnx")
    files = {name: tampered(exported, folder / f"{name}.onnx", **fields) for name, (fields, _) in CASES.items()}
    files["no_metadata"] = identity_graph(folder / "no_metadata.onnx", {})
    files["metadata_on_a_rank_2_graph"] = identity_graph(folder / "rank2.onnx", props_of(exported))
    return files


EXPECTED = {**{name: says for name, (_, says) in CASES.items()}, **GRAPHS}


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("command", ["predict", "eval", "serve"])
def test_an_exported_file_is_checked_when_opened(made, bad_files, case, command, tmp_path, capsys):
    _, _, data = made
    path = bad_files[case]
    if command == "serve":  # the service `imgcls serve` opens before it takes the port
        with pytest.raises(CheckpointError) as refused:
            open_model(path, device="cpu")
        line = str(refused.value)
    else:
        argv = ([command, path, data / "class_0" / "img_000.jpg"] if command == "predict" else
                [command, path, data, "-o", tmp_path / "e", "--workers", 0])
        assert run_cli(argv) == 2
        line = error_line(capsys, only=True)
        assert not (tmp_path / "e").exists()
    assert line.startswith(("imgcls: error: " if command != "serve" else "") + f"{path}: ") and EXPECTED[case] in line
    assert "\n" not in line


def test_the_untampered_export_predicts(made, capsys):
    _, exported, data = made
    assert run_cli(["predict", exported, data / "class_0" / "img_000.jpg", "--topk", 3]) == 0
    assert sorted(label.split()[0] for label in capsys.readouterr().out.split(": ", 1)[1].split(", ")) == CLASSES


def test_serve_refuses_a_file_whose_resize_would_take_gigabytes(made, tmp_path):
    """The issue's file: `resize 100000` made predict grow to 14.6 GB and serve answer HTTP 500 on every
    request. Opened only (no image is predicted), so this stays safe even where the check is missing."""
    _, exported, _ = made
    path = tampered(exported, tmp_path / "huge.onnx", preprocessing={**PRE, "resize": 100000})
    for open_it in (lambda: open_model(path, device="cpu"), lambda: Predictor.load(path)):
        with pytest.raises(CheckpointError, match=r"huge\.onnx: metadata preprocessing\.resize 100000: must be "
                                                  r"between 1 and 4096 px; export it again from its checkpoint"):
            open_it()


# -- export ----------------------------------------------------------------------------------------

def test_export_never_overwrites_a_file_it_did_not_write(made, tmp_path, capsys):
    ckpt, exported, _ = made
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    other = identity_graph(tmp_path / "other.onnx", {"producer": "another tool"})
    before = open(other, "rb").read()
    for target in (notes, other):
        assert run_cli(["export", ckpt, "-o", target]) == 2
        assert (f"-o {target}: exists and was not written by imgcls export; imgcls does not overwrite it"
                in error_line(capsys, only=True))
    assert notes.read_text() == "my notes\n" and open(other, "rb").read() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_export_replaces_its_own_file_and_removes_what_killed_exports_left(made, tmp_path, capsys):
    """One export run: an earlier export of that name is replaced; the temporary files of a writer that is
    gone (kill -9 during --int8) are removed and a live writer's are kept; an unreadable check image is
    skipped with its reason, and no advice about --skip-bad, a flag export does not have."""
    ckpt, exported, data = made
    out = tmp_path / "m.onnx"
    tampered(exported, out, source="an earlier export")
    dead = [tmp_path / f".m.onnx.{NO_SUCH_PID}.fp32.k3j2h1.tmp", tmp_path / f".m.onnx.{NO_SUCH_PID}.prep.a1b2c3.tmp",
            tmp_path / f".m.onnx.{NO_SUCH_PID}.int8-minmax-8.x9y8z7.tmp"]
    alive = tmp_path / f".m.onnx.{os.getpid()}.fp32.abcdef.tmp"
    mine = tmp_path / "notes.tmp"
    for p in (*dead, alive, mine):
        p.write_bytes(b"x" * 100)
    check = make_tiny_folder(tmp_path / "check", per_class=2)
    (check / "class_0" / "broken.jpg").write_text("not a photo")
    assert run_cli(["export", ckpt, "-o", out, "--val", check, "--check-images", 6]) == 0
    assert props_of(out)["source"] == str(ckpt)
    assert not any(p.exists() for p in dead) and alive.exists() and mine.exists()
    err = capsys.readouterr().err
    assert "broken.jpg: not an image: looks like text" in err and "--skip-bad" not in err


def test_export_hints_name_only_its_own_flags(tmp_path, capsys):
    plain = tmp_path / "plain.pth"
    torch.save(create_model("lenet5", num_classes=3).state_dict(), plain)
    assert run_cli(["export", plain, "-o", tmp_path / "p.onnx"]) == 2
    line = error_line(capsys, only=True)
    assert f"{plain}: not an imgcls checkpoint (a plain state dict? it has no class names or preprocessing: " \
           "export a checkpoint written by imgcls train, or a weights name)" in line
    assert "--weights" not in line and not (tmp_path / "p.onnx").exists()
