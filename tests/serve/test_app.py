"""The JSON API of `imgcls serve`, in-process with FastAPI's test client: the same JSON as `imgcls predict
--json`, the model card, and every refusal (413, 415, decompression bomb, 429 with Retry-After), with no
server file ever read on a request's say-so."""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'imgcls[serve]'")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx: pip install httpx")
from fastapi.testclient import TestClient  # noqa: E402

from imgcls.checkpoint import load_checkpoint  # noqa: E402
from imgcls.data import Preprocessing, Resize  # noqa: E402
from imgcls.data.transforms import image_size  # noqa: E402
from imgcls.errors import ConfigError  # noqa: E402
from imgcls.inference import Prediction  # noqa: E402
from imgcls.serve import BoundedPool, Busy, ModelService, ServeOptions, open_model  # noqa: E402
from imgcls.serve.app import create_app  # noqa: E402
from tests.conftest import flat_jpeg, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def service(tiny_run) -> ModelService:
    return open_model(tiny_run[1], device="cpu")


@pytest.fixture
def client(service):
    with TestClient(create_app(service, ServeOptions(max_upload_mb=0.05, max_files=3, topk=2))) as c:
        yield c


def photos(tiny_run, n: int = 2):
    return sorted((tiny_run[0] / "class_2").glob("*.jpg"))[:n]


def test_the_page_is_one_self_contained_file(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]  # the browser fetches nothing else
    assert "http://" not in r.text and "https://" not in r.text and "<script src" not in r.text
    assert client.get("/healthz").json() == {"status": "ok", "workers": 1, "queue": 8}
    assert set(client.get("/openapi.json").json()["paths"]) == {"/healthz", "/model", "/predict"}


def test_predict_returns_what_imgcls_predict_json_prints(client, tiny_run, capsys):
    files = photos(tiny_run)
    r = client.post("/predict", files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files])
    assert r.status_code == 200
    assert run_cli(["predict", tiny_run[1], *files, "--json", "--topk", "2", "--device", "cpu"]) == 0
    expected = json.loads(capsys.readouterr().out)
    got = r.json()
    assert [g["path"] for g in got] == [f.name for f in files]  # the upload's name, not a server path
    for g, e in zip(got, expected):
        assert g.keys() == e.keys() == {"path", "error", "answer", "top"} and g["error"] is None
        assert g["answer"] == e["answer"] == g["top"][0]["label"]  # no --abstain: always the top label
        assert [t["label"] for t in g["top"]] == [t["label"] for t in e["top"]]
        assert [t["prob"] for t in g["top"]] == pytest.approx([t["prob"] for t in e["top"]], abs=1e-5)


def test_serve_abstains_and_its_card_shows_the_temperature(tiny_run):
    service = open_model(tiny_run[1], device="cpu", abstain="1")  # nothing is certain: every answer is unknown
    with TestClient(create_app(service, ServeOptions(topk=2))) as c:
        card = c.get("/model").json()
        files = photos(tiny_run)
        got = c.post("/predict", files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files]).json()
    assert card["abstain"] == 1.0 and card["temperature"] == service.predictor.temperature != 1.0
    assert [g["answer"] for g in got] == ["unknown"] * 2 and all(g["top"] for g in got)
    with pytest.raises(ConfigError, match="--abstain 'maybe'"):
        open_model(tiny_run[1], device="cpu", abstain="maybe")


def test_cam_adds_the_overlay_of_the_crop(client, tiny_run):
    f = photos(tiny_run, 1)[0]
    entry = client.post("/predict?cam=true", files={"files": (f.name, f.read_bytes())}).json()[0]
    assert entry["cam"]["layer"] == "layer4" and entry["cam"]["class"] == entry["top"][0]["label"]
    png = Image.open(io.BytesIO(base64.b64decode(entry["cam"]["png"].removeprefix("data:image/png;base64,"))))
    assert png.format == "PNG" and png.width == png.height >= 32


def test_model_card(client, tiny_run):
    card = client.get("/model").json()
    state = load_checkpoint(tiny_run[1])
    assert card["architecture"] == "resnet18" and card["classes"] == ["class_0", "class_1", "class_2"]
    assert card["val_top1"] == pytest.approx(state["best"]["top1"]) and card["source"] == "best.ckpt"
    assert card["parameters"] == sum(v.numel() for k, v in state["model"].items() if "running" not in k
                                     and "num_batches" not in k)
    assert card["preprocessing"]["crop"] == 32 and card["cam"] == {"available": True, "layer": "layer4", "reason": None}
    assert card["topk"] == 2 and card["max_upload_mb"] == 0.05


def test_too_big_too_many_and_not_images_are_refused_with_the_reason(client, tiny_run, monkeypatch):
    f = photos(tiny_run, 1)[0]
    r = client.post("/predict", files={"files": ("huge.jpg", b"\xff" * 60_000)})
    assert r.status_code == 413 and r.json()["detail"] == "huge.jpg: 0.1 MB, above the limit of 0.05 MB"
    r = client.post("/predict", files=[("files", (f"{i}.jpg", f.read_bytes())) for i in range(4)])
    assert r.status_code == 413 and r.json()["detail"] == "4 files: at most 3 a request"
    r = client.post("/predict", content=b"x" * 2_000_000, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "at most 3 files of 0.05 MB each" in r.json()["detail"]  # refused unread
    r = client.post("/predict", files={"files": ("notes.jpg", b"just some text\n")})
    assert r.status_code == 415 and r.json()["detail"] == "notes.jpg: not an image: looks like text"
    r = client.post("/predict", files={"files": ("empty.png", b"")})
    assert r.status_code == 415 and r.json()["detail"] == "empty.png: not an image: empty file"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 40 x 48 photo now counts as a bomb
    r = client.post("/predict", files={"files": (f.name, f.read_bytes())})
    assert r.status_code == 415 and "refused as a possible decompression bomb" in r.json()["detail"]


def test_a_file_name_is_only_a_name(client, tiny_run):
    """A request naming a real image on the server gets its own bytes judged, never the server's file."""
    real = photos(tiny_run, 1)[0]
    r = client.post("/predict", files={"files": (str(real), b"not an image")})
    assert r.status_code == 415 and "looks like text" in r.json()["detail"]
    r = client.post("/predict", files={"files": ("../../etc/passwd", real.read_bytes())})
    assert r.status_code == 200 and r.json()[0]["path"] == "../../etc/passwd" and r.json()[0]["top"]


class BlockingService:
    """A backend whose predictions wait for `release`: the pool's state is set by the test, not by time."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.predictor = type("P", (), {"classes": ["a", "b"]})()

    def predict(self, uploads, *, topk, cam, max_pixels=None):
        self.entered.set()
        assert self.release.wait(30)
        return [Prediction(name, ["a"], [1.0], [0]).to_dict() for name, _ in uploads]


def multipart_chunks(name: str, data: bytes, pulled: list, boundary: str = "imgcls-test"):
    """(generator of a one-file multipart body that records each chunk it hands over, its headers)."""
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for i in range(0, len(body), 1000):
            pulled.append(len(body[i:i + 1000]))
            yield body[i:i + 1000]

    return chunks(), {"content-type": f"multipart/form-data; boundary={boundary}", "content-length": str(len(body))}


def test_a_busy_server_answers_429_before_reading_the_body():
    backend = BlockingService()
    with TestClient(create_app(backend, ServeOptions(workers=1, queue=0))) as client:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=client.post("/predict", files={"files": ("a.jpg", b"1")})))
        t.start()
        assert backend.entered.wait(30)  # the only place is taken
        pulled: list[int] = []
        body, headers = multipart_chunks("b.jpg", b"x" * 50_000, pulled)
        r = client.post("/predict", content=body, headers=headers)
        assert r.status_code == 429 and pulled == []  # not a byte of the upload was read, nor stored
        backend.release.set()
        t.join(30)
        body, headers = multipart_chunks("c.jpg", b"x" * 50_000, pulled)
        assert client.post("/predict", content=body, headers=headers).status_code == 200
        assert sum(pulled) == int(headers["content-length"])  # a free server reads it all


def test_a_full_queue_is_429_with_retry_after():
    backend = BlockingService()
    with TestClient(create_app(backend, ServeOptions(workers=1, queue=0))) as client:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=client.post("/predict", files={"files": ("a.jpg", b"1")})))
        t.start()
        assert backend.entered.wait(30)  # the only worker is now busy and there is no queue
        r = client.post("/predict", files={"files": ("b.jpg", b"2")})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "retry after" in r.json()["detail"]
        backend.release.set()
        t.join(30)
        assert first["r"].status_code == 200 and first["r"].json()[0]["path"] == "a.jpg"
        assert client.post("/predict", files={"files": ("c.jpg", b"3")}).status_code == 200  # free again


def test_the_pool_holds_workers_plus_queue_jobs_and_refuses_the_next():
    pool, gate, entered = BoundedPool(workers=1, queue=1), threading.Event(), threading.Event()
    running = pool.submit(lambda: (entered.set(), gate.wait(30)))
    assert entered.wait(30)
    waiting = pool.submit(lambda: "second")
    with pytest.raises(Busy) as e:
        pool.submit(lambda: "third")
    assert e.value.retry_after >= 1
    gate.set()
    assert running.result(30)[1] is True and waiting.result(30) == "second"
    assert pool.submit(lambda: "again").result(30) == "again"  # slots released
    pool.shutdown()


def test_images_above_the_pixel_budget_are_413_naming_the_limit(service, tmp_path):
    big = flat_jpeg(tmp_path / "big.jpg", 4000, 4000).read_bytes()  # 16 MP, exact decode (below 16.8 MP)
    strip = io.BytesIO()
    Image.new("RGB", (1, 20000)).save(strip, "PNG")  # 1 kB, but side x 20000 side once resized
    side = service.predictor.preprocessing.resize
    with TestClient(create_app(service, ServeOptions(max_megapixels=20, workers=1, queue=0))) as client:
        assert client.post("/predict", files={"files": ("big.jpg", big)}).status_code == 200
        r = client.post("/predict", files=[("files", ("big.jpg", big)), ("files", ("big2.jpg", big))])
        assert r.status_code == 413 and r.json()["detail"] == (
            "big2.jpg: decodes to 4000x4000 px which brings the request to 32.0 megapixels, above the limit of 20 a "
            "request (--max-megapixels)")
        r = client.post("/predict", files={"files": ("strip.png", strip.getvalue())})
        assert r.status_code == 413 and r.json()["detail"] == (
            f"strip.png: decodes to 1x20000 px, {side}x{20000 * side} once resized, which brings the request to "
            f"{20000 * side * side / 1e6:.1f} megapixels, above the limit of 20 a request (--max-megapixels)")
        r = client.post("/predict", data={"note": "no file"}, files={"other": ("a.jpg", big)})
        assert r.status_code == 422 and r.json()["detail"].startswith("no files: send the images")
        # every refusal gave its place back: the pool of one is free again
        assert client.post("/predict", files={"files": ("big.jpg", big)}).status_code == 200


def test_a_huge_jpeg_upload_is_decoded_reduced(service, tmp_path, monkeypatch):
    """20000 x 20000 px, 4.7 MB: decoded at 1/8 scale (2500 x 2500), one upload at a time."""
    huge = flat_jpeg(tmp_path / "huge.jpg", 20000, 20000).read_bytes()
    seen = []
    resize = Resize.__call__
    monkeypatch.setattr(Resize, "__call__", lambda self, img: seen.append(image_size(img)) or resize(self, img))
    with TestClient(create_app(service, ServeOptions())) as client:
        r = client.post("/predict", files=[("files", ("huge.jpg", huge)), ("files", ("again.jpg", huge))])
    assert r.status_code == 200 and [e["path"] for e in r.json()] == ["huge.jpg", "again.jpg"]
    assert max(seen) == (2500, 2500) and seen.count((2500, 2500)) == 2


class ExportedPredictor:
    """What an ONNX-backed Predictor looks like to serve: predictions, no torch model."""

    model = None
    classes = ["cat", "dog"]
    preprocessing = Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3, "bilinear")

    def predict(self, images, *, topk):
        return [Prediction("<image>", ["dog", "cat"][:topk], [0.75, 0.25][:topk], [1, 0][:topk]) for _ in images]


def test_a_model_without_torch_has_no_cam_and_says_why(tiny_run):
    service = ModelService(ExportedPredictor(), source="model.onnx", info={"backend": "onnx", "parameters": 123})
    with TestClient(create_app(service)) as client:
        card = client.get("/model").json()
        assert card["cam"]["available"] is False and "exported" in card["cam"]["reason"]
        assert card["backend"] == "onnx" and card["parameters"] == 123
        f = photos(tiny_run, 1)[0]
        entry = client.post("/predict?cam=true", files={"files": (f.name, f.read_bytes())}).json()[0]
        assert entry["cam"] is None and entry["top"][0] == {"label": "dog", "index": 1, "prob": 0.75}


def test_the_card_rounds_mean_and_std():
    predictor = ExportedPredictor()
    predictor.preprocessing = dataclasses.replace(ExportedPredictor.preprocessing, mean=(127 / 255,) * 3,
                                                  std=(0.229, 0.224, 0.2250001))
    card = ModelService(predictor, source="model.onnx").card()
    assert card["preprocessing"]["mean"] == [0.498] * 3 and card["preprocessing"]["std"] == [0.229, 0.224, 0.225]


def test_serve_refuses_a_bad_model_or_port_in_one_line(tmp_path, tiny_run, capsys):
    from tests.conftest import error_line

    assert run_cli(["serve", tmp_path / "missing.ckpt"]) == 2
    assert error_line(capsys, only=True) == f"imgcls: error: {tmp_path / 'missing.ckpt'}: no such checkpoint or ONNX file"
    from imgcls.serve.app import bind

    taken = bind("127.0.0.1", 0)
    try:
        assert run_cli(["serve", tiny_run[1], "--port", taken.getsockname()[1], "--device", "cpu"]) == 2
        assert "cannot listen there: in use; pick another --port" in error_line(capsys, only=True)
    finally:
        taken.close()
    assert run_cli(["serve", tiny_run[1], "--max-upload-mb", "0"]) == 2
    assert error_line(capsys).endswith("argument --max-upload-mb: 0.0: must be > 0")
