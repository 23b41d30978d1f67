"""`imgcls serve` of a segmentation checkpoint: the model card says segmentation (palette, void, val mean IoU),
POST /predict returns each photo's class shares and its mask as a palette PNG at the photo's size, the same
mask `imgcls predict` writes; the classifier's limits and refusals apply unchanged."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'imgcls[serve]'")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx: pip install httpx")
from fastapi.testclient import TestClient  # noqa: E402

from imgcls.serve import ServeOptions, open_model  # noqa: E402
from imgcls.serve.app import create_app  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.seg_data import NAMES, PALETTE, mask_pattern, photo_of, train_tiny_seg  # noqa: E402


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    return train_tiny_seg(tmp_path_factory.mktemp("segserve"))


@pytest.fixture(scope="module")
def client(seg_run):
    with TestClient(create_app(open_model(seg_run[1], device="cpu"), ServeOptions(max_files=2))) as c:
        yield c


def _png(mask_url: str) -> Image.Image:
    assert mask_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(mask_url.split(",", 1)[1])))


def test_the_card_describes_a_segmentation_model(client):
    card = client.get("/model").json()
    assert card["task"] == "segmentation" and card["classes"] == NAMES and card["architecture"] == "fcn8s"
    assert card["palette"][:3] == [list(c) for c in PALETTE[:3]] and card["void"] == 3
    assert 0 <= card["val_miou"] <= 1 and card["val_top1"] is None and card["cam"]["available"] is False
    assert card["preprocessing"]["crop"] is None and card["backend"] == "pytorch"


def test_predict_returns_shares_and_the_mask_imgcls_predict_writes(client, seg_run, tmp_path, capsys):
    data, ckpt = seg_run
    Image.fromarray(photo_of(mask_pattern(70, 50, 1))).save(tmp_path / "odd.png")
    files = [data / "val/images/val00.png", tmp_path / "odd.png"]
    r = client.post("/predict?cam=true", files=[("files", (f.name, f.read_bytes(), "image/png")) for f in files])
    assert r.status_code == 200
    got = r.json()
    assert [g["path"] for g in got] == ["val00.png", "odd.png"] and [g["size"] for g in got] == [[48, 32], [70, 50]]
    assert all(g["task"] == "segmentation" and g["error"] is None and g["cam"] is None for g in got)
    capsys.readouterr()
    assert run_cli(["predict", ckpt, *files, "--json", "-o", tmp_path / "masks"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for g, c, f in zip(got, cli, files):
        shares = g["shares"]
        assert [s["share"] for s in shares] == sorted((s["share"] for s in shares), reverse=True)
        assert {s["label"]: s["share"] for s in shares} == pytest.approx(c["shares"], abs=1e-6)
        mask = _png(g["mask"])
        assert mask.mode == "P" and mask.getpalette()[:12] == [v for c in PALETTE for v in c]
        assert np.array_equal(np.asarray(mask), np.asarray(Image.open(tmp_path / "masks" / f"{f.stem}.png")))


def test_the_classifiers_refusals_apply(client):
    r = client.post("/predict", files=[("files", ("notes.jpg", b"hello", "image/jpeg"))])
    assert r.status_code == 415 and "notes.jpg" in r.json()["detail"]
    r = client.post("/predict", files=[("files", (f"{i}.png", b"x", "image/png")) for i in range(3)])
    assert r.status_code == 413


def test_the_page_has_the_mask_view_and_keeps_the_classifiers(client):
    page = client.get("/").text
    assert "function renderMask" in page and "function showSegCard" in page
    assert "val top-1" in page and "Grad-CAM of" in page  # the classifier's page is still there
