import json

import pytest
from PIL import Image

from imgcls.cli import main
from imgcls.data import make_split, write_split
from imgcls.data.check import CheckReport, check_dataset
from imgcls.errors import ConfigError
from tests.conftest import flat_jpeg


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
    assert main(["check", str(root)]) == 0  # 64x48: below 224 px but upsampled fine, flagged only on request
    assert main(["check", str(root), "--min-side", "50"]) == 1
    assert "smaller than 50px: 2" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "missing")]) == 2


def test_text_shows_a_few_of_each_kind_and_verbose_all():
    report = CheckReport("s", ["a", "b"], {"all": [7, 3]}, bad_files=[(f"s/a/{i}.jpg", "empty") for i in range(7)],
                         problems=["one problem"])
    text = report.to_text().splitlines()
    assert text[6:] == ["problem: 1", "  one problem", "unreadable: 7", *(f"  s/a/{i}.jpg: empty" for i in range(5)),
                        "  ... and 2 more (--verbose lists them all)", "8 finding(s)"]
    assert report.to_text(verbose=True).count(": empty") == 7 and not report.clean


def test_min_side_is_checked(tmp_path):
    root = _make(tmp_path / "s", {"a/1.png": (1, 0, 0), "b/1.png": (2, 0, 0)})
    with pytest.raises(ConfigError, match="--min-side 0: must be at least 1"):
        check_dataset(root, min_side=0)
    assert check_dataset(root).clean and check_dataset(root, min_side=49).too_small == [
        (str(root / "a" / "1.png"), 64, 48), (str(root / "b" / "1.png"), 64, 48)]


def test_a_huge_jpeg_is_not_a_bomb(tmp_path):
    """predict and eval decode a 20000 x 20000 JPEG reduced, so check does not flag it as a bomb."""
    root = _make(tmp_path / "s", {"a/1.png": (1, 0, 0), "b/1.png": (2, 0, 0)})
    flat_jpeg(root / "a" / "huge.jpg", 20000, 20000)
    report = check_dataset(root)
    assert report.bad_files == [] and report.too_small == [] and report.counts == {"all": [2, 1]}


def test_an_unbalanced_set_is_a_finding_naming_the_remedies(tmp_path):
    balanced = {f"a/{i}.png": (i, 0, 0) for i in range(3)} | {"b/1.png": (99, 0, 0)}
    report = check_dataset(_make(tmp_path / "three", balanced))
    assert report.imbalance == 3.0 and report.clean  # 3x is not yet a finding
    report = check_dataset(_make(tmp_path / "four", balanced | {"a/3.png": (50, 0, 0)}))
    assert report.imbalance == 4.0 and not report.clean
    [line] = report.findings()["imbalance"]
    assert line.startswith("classes are unbalanced: a has 4 images, b 1 (4.0x)")
    assert "--class-weights balanced" in line and "--sampler balanced" in line and "--metric" in line
    assert "imbalance: 1\n  classes are unbalanced" in report.to_text()
