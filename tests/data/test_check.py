import json

from PIL import Image

from imgcls.cli import main
from imgcls.data import make_split, write_split
from imgcls.data.check import check_dataset


def _make(root, layout):
    for rel, color in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), color).save(root / rel)
    return root


def test_clean_set(tmp_path):
    root = _make(tmp_path / "s", {"a/1.png": (1, 0, 0), "a/2.png": (2, 0, 0), "b/1.png": (3, 0, 0)})
    report = check_dataset(root, min_side=32)
    assert report.clean and report.counts == {"all": [2, 1]} and report.imbalance == 2.0


def test_findings(tmp_path):
    root = _make(tmp_path / "s", {"a/1.png": (1, 0, 0), "a/copy.png": (1, 0, 0), "b/same.png": (5, 0, 0),
                                  "c/same.png": (5, 0, 0), "c/ok.png": (9, 0, 0)})
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    report = check_dataset(root, min_side=50)
    assert [p.split("/")[-1] for p, _ in report.bad_files] == ["broken.jpg"]
    assert len(report.too_small) == 5  # every 64x48 image is below 50 on its shorter side
    assert [[p.split("s/")[-1] for p in g] for g in report.duplicates["within_class"]] == [["a/1.png", "a/copy.png"]]
    assert [[p.split("s/")[-1] for p in g] for g in report.duplicates["across_classes"]] == [
        ["b/same.png", "c/same.png"]]
    assert not report.clean


def test_leak_across_splits_in_folders_and_index(tmp_path):
    root = _make(tmp_path / "s", {f"a/{i}.png": (i, 0, 0) for i in range(10)})
    _make(root, {"a/dup.png": (0, 0, 0)})  # same bytes as a/0.png
    split = make_split(root, val=0.5, seed=0)
    in_val = {p.name for p, _ in split.parts["val"]}
    leaks = ("0.png" in in_val) != ("dup.png" in in_val)
    for mode in ("copy", "index"):
        out = write_split(split, tmp_path / mode, mode=mode)
        report = check_dataset(out, min_side=1)
        assert set(report.counts) == {"train", "val"}
        assert len(report.duplicates["across_splits"]) == int(leaks)
        assert len(report.duplicates["within_class"]) == int(not leaks)


def test_cli_exit_codes(tmp_path, capsys):
    root = _make(tmp_path / "s", {"a/1.png": (1, 0, 0), "b/1.png": (2, 0, 0)})
    assert main(["check", str(root), "--min-side", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True
    assert main(["check", str(root)]) == 1
    assert "smaller than 224px" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "missing")]) == 2
