"""`imgcls demo` end to end, shortened to one epoch."""
import json

from PIL import Image

import imgcls
from imgcls.cli import main
from imgcls.data import read_split
from imgcls.paths import bundled_photos


def test_bundled_subset_is_small_licensed_and_complete():
    root = bundled_photos()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 300 and sum(f.stat().st_size for f in files) < 5_000_000
    credits = (root / "LICENSE.txt").read_text()
    assert "creativecommons.org/licenses/by/2.0" in credits
    assert all(f"{f.parent.name}/{f.name} CC-BY" in credits for f in files)
    with Image.open(files[0]) as im:
        assert min(im.size) == 128


def test_demo_runs_offline_and_leaves_its_artefacts(tmp_path, caplog):
    caplog.set_level("INFO", logger="imgcls")
    assert main(["demo", "-o", str(tmp_path), "--epochs", "1", "--no-progress"]) == 0
    run = tmp_path / "exp1"
    for name in ("best.ckpt", "curves.png", "confusion_matrix.png", "report.txt", "eval/report.txt",
                 "split/split.json"):
        assert (run / name).is_file(), name
    assert "predict 14348961225_09bd803317_n.jpg: " in caplog.text
    assert imgcls.Predictor.from_checkpoint(run / "best.ckpt").classes[3] == "sunflowers"
    # the eval report covers the 60 photos the run validated on, never the 240 it trained on
    report = json.loads((run / "eval" / "report.json").read_text())
    held_out = {str(p) for p, _ in read_split(run / "split", "val")[1]}
    assert report["n"] == 60 and report["top1"] == json.loads((run / "report.json").read_text())["top1"]
    assert {m["sample"] for m in report["most_confident_wrong"]} <= held_out
    assert f"held-out val top-1 {100 * report['top1']:.1f}% on 60 photos" in caplog.text
    assert "efficientnet_lite0 (ImageNet weights efficientnet_lite0.in1k, a new head on cached features)" in caplog.text
    assert "all 300" not in caplog.text
