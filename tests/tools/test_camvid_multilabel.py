"""tools/camvid_multilabel.py on ../shared/data/camvid (only its masks are read): the multi-label CSV that
benchmarks/multilabel_camvid.py trains on."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TOOL = Path(__file__).resolve().parents[2] / "tools" / "camvid_multilabel.py"


def tool():
    spec = importlib.util.spec_from_file_location("camvid_multilabel", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_class_is_present_from_half_a_percent_of_the_pixels_void_never(tmp_path):
    mask = np.full((20, 50), 11, np.uint8)  # 1000 pixels: void
    mask[0, :5] = 0  # 5 pixels = 0.5%: present
    mask[1, :4] = 1  # 4 pixels: absent
    mask[2:, :] = 3
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert tool().photo_labels(tmp_path / "m.png", ["Sky", "Building", "Pole", "Road"], 11, 0.005) == ["Sky", "Road"]


def test_the_csv_of_camvid_reads_as_a_multi_label_set(shared, tmp_path, capsys):
    camvid = shared / "data" / "camvid"
    if not (camvid / "classes.json").is_file():
        pytest.skip(f"{camvid}: CamVid is not there (see ../shared/data)")
    out = tmp_path / "camvid.csv"
    assert tool().main([str(camvid), "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 468 and {r["split"] for r in rows} == {"train", "val"}
    assert sum(r["split"] == "val" for r in rows) == 101
    counts = {}
    for r in rows:
        for c in r["labels"].split(";"):
            counts[c] = counts.get(c, 0) + 1
    assert counts["Road"] == 468 and min(counts, key=counts.get) == "Bicyclist" and "Unlabelled" not in counts
    from imgcls.data import open_parts
    from imgcls.data.table import CsvColumns

    parts = open_parts(out, csv=CsvColumns(images=str(camvid), label_sep=";"))
    assert parts.task == "multilabel" and len(parts.classes) == 11 and len(parts.parts["train"]) == 367
    with pytest.raises(SystemExit):
        tool().main([str(camvid), "-o", str(camvid / "labels.csv")])  # never inside the data folder
    assert "inside the CamVid folder" in capsys.readouterr().err and not (camvid / "labels.csv").exists()
