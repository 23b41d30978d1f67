"""The page in a real browser: Playwright drives Debian's chromium (Playwright's own browser download is
out of reach here, so it is pointed at the system executable), uploads a flower photo, waits for the
answer and checks the top-1 label shown and the Grad-CAM image rendered; a screenshot is saved."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'imgcls[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (Debian: apt-get install chromium; .ci/run does it)")
def test_the_page_classifies_a_dropped_photo_and_shows_its_cam(tiny_run, shared, tmp_path):
    from imgcls.serve import ServeOptions, open_model
    from imgcls.serve.app import create_app, running

    photo = sorted((shared / "data" / "flower_photos" / "tulips").glob("*.jpg"))[0]
    service = open_model(tiny_run[1], device="cpu")
    expected = service.predict([(photo.name, photo.read_bytes())], topk=3)[0]["top"][0]["label"]
    with running(create_app(service, ServeOptions(topk=3))) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector(".result[data-state='done']", timeout=60_000)
            assert page.text_content(".result .top1") == expected
            assert len(page.query_selector_all(".result .bar")) == 3
            assert page.eval_on_selector(".result img.cam", "img => img.complete && img.naturalWidth") >= 32
            assert "resnet18" in page.text_content("#card") and not page.query_selector(".result .error")
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        finally:
            browser.close()
    assert outside == [] and (tmp_path / "serve.png").stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="no system chromium (Debian: apt-get install chromium; .ci/run does it)")
def test_the_page_lays_a_segmentation_mask_over_the_photo(tmp_path):
    from PIL import Image

    from imgcls.serve import ServeOptions, open_model
    from imgcls.serve.app import create_app, running
    from tests.seg_data import NAMES, mask_pattern, photo_of, train_tiny_seg

    data, ckpt = train_tiny_seg(tmp_path / "seg")
    photo = tmp_path / "street.png"
    Image.fromarray(photo_of(mask_pattern(96, 64, 2))).save(photo)
    service = open_model(ckpt, device="cpu")
    top = service.predict([(photo.name, photo.read_bytes())])[0]["shares"][0]["label"]
    with running(create_app(service, ServeOptions())) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            assert "segmentation" in page.text_content("#subtitle")
            assert all(name in page.text_content("#card") for name in NAMES)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector(".result[data-state='done']", timeout=60_000)
            assert top in page.text_content(".result .top1") and not page.query_selector(".result .error")
            assert page.eval_on_selector(".result img.mask", "img => img.complete && img.naturalWidth") == 96
            page.screenshot(path=str(tmp_path / "serve-seg.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "serve-seg.png").stat().st_size > 5_000
