"""imgcls.weights: the registry, resumable hash-checked downloads (against a local HTTP server),
reading every supported file layout, and loading with head surgery."""
from __future__ import annotations

import hashlib
import inspect
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from torch import nn

import imgcls
from imgcls.data.transforms import eval_transform
from imgcls.errors import WeightsError
from imgcls.weights import (WEIGHTS, WeightSpec, default_weights_dir, download, get_weight_spec, list_weights,
                            load_pretrained, load_weights, read_state_dict, resolve_weights)

# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

V1 = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
      "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "alexnet"]


@pytest.mark.parametrize("arch", V1)
def test_bare_arch_name_is_an_alias_for_its_v1_weights(arch):
    spec = get_weight_spec(arch)
    assert spec is get_weight_spec(f"{arch}.tv_in1k")
    assert spec.arch == arch and spec.num_classes == 1000
    assert spec.url == f"https://download.pytorch.org/models/{spec.filename}"
    assert re.fullmatch(rf"{arch}(-owt)?-{spec.sha256}\.pth", spec.filename)


@pytest.mark.parametrize("name", list_weights())
def test_every_spec_names_a_model_and_a_usable_eval_transform(name):
    spec = WEIGHTS[name]
    assert spec.arch in imgcls.list_models()
    assert len(spec.sha256) == 8 and 50 < spec.acc1 < 90
    assert set(spec.preprocessing) <= set(inspect.signature(eval_transform).parameters)
    eval_transform(**spec.preprocessing)
    assert spec.preprocessing["crop"] == 224 and spec.preprocessing["interpolation"] == "bilinear"


def test_v2_weights_are_evaluated_at_resize_232():
    assert get_weight_spec("resnet50.tv2_in1k").url.endswith("resnet50-11ad3fa6.pth")
    assert get_weight_spec("resnet50.tv2_in1k").preprocessing["resize"] == 232
    assert get_weight_spec("resnet50").preprocessing["resize"] == 256
    assert list_weights("resnet50.*") == ["resnet50.tv2_in1k", "resnet50.tv_in1k"]


def test_unknown_weights_name_suggests_close_matches():
    with pytest.raises(WeightsError, match=r"unknown weights 'resnet19'.*resnet18"):
        get_weight_spec("resnet19")


def test_default_weights_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("IMGCLS_HOME")
    assert default_weights_dir() == tmp_path / "xdg" / "imgcls" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_weights_dir() == tmp_path / ".cache" / "imgcls" / "weights"


# ---------------------------------------------------------------------------------------------
# download, against a server on 127.0.0.1
# ---------------------------------------------------------------------------------------------

BODY = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one read chunk
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append(rng)
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and server.honour_range:
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        server.sent.append(len(body))  # before writing: once the client has the bytes, the count is there
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"/w.pth": BODY}
    httpd.requests, httpd.sent, httpd.honour_range = [], [], True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused at once


@pytest.mark.parametrize("sha256", [BODY_SHA[:8], BODY_SHA, BODY_SHA.upper(), None])
def test_download_full_file_with_prefix_or_full_hash(server, tmp_path, sha256):
    dest = tmp_path / "sub" / "w.pth"
    assert download(f"{server.url}/w.pth", dest, sha256=sha256, progress=sha256 is None) == dest
    assert dest.read_bytes() == BODY
    assert not (tmp_path / "sub" / "w.pth.part").exists()
    assert server.requests == [None]


def test_download_hash_mismatch_deletes_the_part_and_names_both_hashes(server, tmp_path):
    dest = tmp_path / "w.pth"
    with pytest.raises(WeightsError, match=rf"w\.pth: sha256 mismatch .*expected deadbeef, got {BODY_SHA}"):
        download(f"{server.url}/w.pth", dest, sha256="deadbeef", progress=False)
    assert not dest.exists() and not (tmp_path / "w.pth.part").exists()


def test_download_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(BODY[:300_000])
    download(f"{server.url}/w.pth", dest, sha256=BODY_SHA[:8], progress=False)
    assert server.requests == ["bytes=300000-"]
    assert server.sent == [len(BODY) - 300_000]  # only the rest travelled
    assert dest.read_bytes() == BODY and not (tmp_path / "w.pth.part").exists()


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"x" * 1000)  # wrong bytes: appending would corrupt the file
    download(f"{server.url}/w.pth", dest, sha256=BODY_SHA[:8], progress=False)
    assert server.requests == ["bytes=1000-"] and server.sent == [len(BODY)]
    assert dest.read_bytes() == BODY


def test_download_restarts_when_the_part_is_already_too_long(server, tmp_path):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(BODY + b"junk")  # the server answers 416
    download(f"{server.url}/w.pth", dest, sha256=BODY_SHA[:8], progress=False)
    assert server.requests == [f"bytes={len(BODY) + 4}-", None]
    assert dest.read_bytes() == BODY


def test_download_network_error_keeps_the_part_for_the_next_run(tmp_path, closed_port):
    part = tmp_path / "w.pth.part"
    part.write_bytes(BODY[:10])
    with pytest.raises(OSError):
        download(f"http://127.0.0.1:{closed_port}/w.pth", tmp_path / "w.pth", progress=False, timeout=5)
    assert part.read_bytes() == BODY[:10]


# ---------------------------------------------------------------------------------------------
# resolve_weights
# ---------------------------------------------------------------------------------------------

def _spec(url: str, sha256: str = BODY_SHA[:8]) -> WeightSpec:
    return WeightSpec(name="toy.test", arch="resnet18", url=url, sha256=sha256)


def test_resolve_existing_path_and_missing_path(tmp_path):
    f = tmp_path / "mine.pth"
    f.write_bytes(b"x")
    assert resolve_weights(str(f)) == f and resolve_weights(f) == f
    with pytest.raises(WeightsError, match=r"nope\.pth: no such weight file"):
        resolve_weights(str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match=r"nope\.pth: no such weight file"):
        resolve_weights("nope.pth")
    with pytest.raises(WeightsError, match="is a directory"):
        resolve_weights(tmp_path)
    with pytest.raises(WeightsError, match=r"unknown weights 'resnet19'.*resnet18"):
        resolve_weights("resnet19")


def test_resolve_downloads_into_the_cache_then_uses_it(server, tmp_path):
    spec = _spec(f"{server.url}/w.pth")
    path = resolve_weights(spec, cache_dir=tmp_path)
    assert path == tmp_path / "w.pth" and path.read_bytes() == BODY
    assert resolve_weights(spec, cache_dir=tmp_path) == path
    assert len(server.requests) == 1  # the second call found the cached file


def test_resolve_replaces_a_cached_file_with_a_wrong_hash(server, tmp_path):
    (tmp_path / "w.pth").write_bytes(b"stale")
    path = resolve_weights(_spec(f"{server.url}/w.pth"), cache_dir=tmp_path)
    assert path.read_bytes() == BODY


def test_resolve_offline_says_in_one_line_where_to_put_the_file(tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}/resnet18-f37072fd.pth"
    with pytest.raises(WeightsError) as info:
        resolve_weights(_spec(url, "f37072fd"), cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {url} (")
    assert f"place the file at {tmp_path / 'resnet18-f37072fd.pth'} (sha256 starts with f37072fd)" in message
    assert message.endswith("or pass --weights /path/to/file")


def test_resolve_registry_name_without_download_names_the_cache_path(tmp_path):
    with pytest.raises(WeightsError) as info:
        resolve_weights("resnet18", cache_dir=tmp_path, download_missing=False)
    message = str(info.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(tmp_path / "resnet18-f37072fd.pth") in message and "starts with f37072fd" in message


# ---------------------------------------------------------------------------------------------
# read_state_dict
# ---------------------------------------------------------------------------------------------

def _small_state() -> dict[str, torch.Tensor]:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2)).state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_read_plain_state_dict(tmp_path):
    state = _small_state()
    torch.save(state, tmp_path / "w.pth")
    got, meta = read_state_dict(tmp_path / "w.pth")
    _assert_same(got, state)
    assert meta == {}


def test_read_imgcls_checkpoint_returns_the_rest_as_metadata(tmp_path):
    state = _small_state()
    ckpt = {"model": state, "meta": {"arch": "toy"}, "config": {"lr": 0.1}, "classes": ["a", "b"], "epoch": 3}
    torch.save(ckpt, tmp_path / "best.ckpt")
    got, meta = read_state_dict(tmp_path / "best.ckpt")
    _assert_same(got, state)
    assert meta == {"meta": {"arch": "toy"}, "config": {"lr": 0.1}, "classes": ["a", "b"], "epoch": 3}


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_read_lightning_style_and_wrapper_prefixes(tmp_path, prefix):
    state = _small_state()
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "epoch": 7}, tmp_path / "w.pt")
    got, meta = read_state_dict(tmp_path / "w.pt")
    _assert_same(got, state)
    assert meta == {"epoch": 7}


def test_read_keeps_a_prefix_that_not_every_key_has(tmp_path):
    state = {"module.weight": torch.ones(1), "other.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "w.pth")
    assert list(read_state_dict(tmp_path / "w.pth")[0]) == ["module.weight", "other.weight"]


def test_read_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    state = _small_state()
    safetensors_torch.save_file(state, tmp_path / "w.safetensors", metadata={"arch": "toy"})
    got, meta = read_state_dict(tmp_path / "w.safetensors")
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert meta == {"arch": "toy"}


def test_read_safetensors_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "w.safetensors").write_bytes(b"{}")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors` fail
    with pytest.raises(WeightsError, match="pip install safetensors"):
        read_state_dict(tmp_path / "w.safetensors")


class _NotATensor:
    pass


def test_read_refuses_corrupt_and_non_state_dict_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WeightsError, match=r"junk\.pth: corrupt or not a PyTorch weight file"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save(_small_state(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pth: corrupt"):
        read_state_dict(tmp_path / "cut.pth")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list\.pth: not a state dict \(the file holds a list\)"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"lr": 0.1, "name": "x"}, tmp_path / "cfg.pth")
    with pytest.raises(WeightsError, match=r"cfg\.pth: not a state dict: entry 'lr' holds a float"):
        read_state_dict(tmp_path / "cfg.pth")
    torch.save({"w": _NotATensor()}, tmp_path / "obj.pth")
    with pytest.raises(WeightsError, match=r"obj\.pth: holds a Python object .*_NotATensor.* refuses"):
        read_state_dict(tmp_path / "obj.pth")


# ---------------------------------------------------------------------------------------------
# load_pretrained
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_in1k() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return imgcls.create_model("resnet18").state_dict()


def test_resnet18_imagenet_weights_into_a_5_class_model(resnet18_in1k):
    model = imgcls.create_model("resnet18", num_classes=5)
    fresh_fc = {k: v.clone() for k, v in model.fc.state_dict().items()}
    report = load_pretrained(model, resnet18_in1k, source="resnet18-f37072fd.pth")

    assert report.skipped_shape == [("fc.weight", (1000, 512), (5, 512)), ("fc.bias", (1000,), (5,))]
    assert report.missing == [] and report.unexpected == [] and report.head_only
    assert len(report.loaded) == len(resnet18_in1k) - 2 == report.total - 2
    text = report.to_text()
    assert text.splitlines()[0] == f"loaded {report.total - 2}/{report.total} tensors from resnet18-f37072fd.pth"
    assert ("the last layer cannot take the pretrained parameters: fc.weight is [1000, 512] in the file and "
            "[5, 512] in the model (5 classes); it starts from a fresh initialisation") in text
    state = model.state_dict()
    for key in report.loaded:  # really copied, buffers (BN running stats) included
        assert torch.equal(state[key], resnet18_in1k[key]), key
    assert all(torch.equal(model.fc.state_dict()[k], v) for k, v in fresh_fc.items())


def test_headless_model_takes_the_backbone_and_reports_the_unused_head(resnet18_in1k):
    report = load_pretrained(imgcls.create_model("resnet18", num_classes=0), resnet18_in1k)
    assert report.unexpected == ["fc.weight", "fc.bias"] and report.head_only
    assert "the file's classifier is not used" in report.to_text()


def test_alexnet_head_is_classifier_6():
    model = imgcls.create_model("alexnet", num_classes=3)
    fresh_head = model.classifier[6].weight.clone()
    # an "ImageNet file" made from the model itself (one 61M-parameter build instead of two)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    state["classifier.6.weight"], state["classifier.6.bias"] = torch.zeros(1000, 4096), torch.zeros(1000)
    report = load_pretrained(model, state)
    assert [k for k, _, _ in report.skipped_shape] == ["classifier.6.weight", "classifier.6.bias"]
    assert "classifier.6.weight is [1000, 4096] in the file and [3, 4096] in the model (3 classes)" in report.to_text()
    assert torch.equal(model.classifier[4].weight, state["classifier.4.weight"])
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.classifier[6].weight, fresh_head)


def test_resnet50_weights_into_resnet18_is_an_error(resnet18_in1k):
    state = imgcls.create_model("resnet50").state_dict()
    model = imgcls.create_model("resnet18")
    before = model.conv1.weight.clone()
    expected = (r"resnet50\.pth does not fit this ResNet \(tensors: \d+ of another shape, \d+ unexpected; "
                r"e\.g\. layer1\.0\.conv1\.weight is \[64, 64, 1, 1\] in the file and \[64, 64, 3, 3\] in the "
                r"model; unexpected .*another architecture")
    with pytest.raises(WeightsError, match=expected):
        load_pretrained(model, state, source="resnet50.pth")
    assert torch.equal(model.conv1.weight, before)  # nothing loaded


def test_weights_of_another_family_match_nothing(resnet18_in1k):
    state = {"features.0.weight": torch.zeros(64, 3, 11, 11), "classifier.6.bias": torch.zeros(1000)}
    with pytest.raises(WeightsError, match=r"none of its 2 tensors fits this ResNet .*another architecture"):
        load_pretrained(imgcls.create_model("resnet18"), state, source="alexnet.pth")


def test_missing_backbone_key_is_an_error(resnet18_in1k):
    state = dict(resnet18_in1k)
    del state["layer1.0.conv1.weight"]
    with pytest.raises(WeightsError, match=r"\(tensors: 1 missing from the file; e\.g\. missing layer1\.0\.conv1\."):
        load_pretrained(imgcls.create_model("resnet18", num_classes=5), state)


def test_remap_state_dict_is_applied_first():
    class Legacy(nn.Module):
        classifier_name = "head"

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(2, 3)
            self.head = nn.Linear(3, 4)

        @staticmethod
        def remap_state_dict(state):
            return {k.replace("old_body.", "body."): v for k, v in state.items()}

    source = {"old_body.weight": torch.ones(3, 2), "old_body.bias": torch.ones(3),
              "head.weight": torch.ones(9, 3), "head.bias": torch.ones(9)}
    model = Legacy()
    report = load_pretrained(model, source)
    assert report.loaded == ["body.weight", "body.bias"] and report.head_only
    assert torch.equal(model.body.weight, torch.ones(3, 2))


def test_load_weights_from_a_file_path(tmp_path, resnet18_in1k):
    torch.save({"model": resnet18_in1k, "classes": ["a"]}, tmp_path / "run.ckpt")
    report = load_weights(imgcls.create_model("resnet18", num_classes=2), tmp_path / "run.ckpt")
    assert report.source == "run.ckpt" and report.head_only and len(report.skipped_shape) == 2


def test_googlenet_auxiliary_heads_count_as_head_when_the_classes_change():
    import imgcls
    from imgcls.weights import load_pretrained

    src = imgcls.create_model("googlenet", num_classes=1000).state_dict()
    model = imgcls.create_model("googlenet", num_classes=4)
    report = load_pretrained(model, src, source="googlenet.pth")
    skipped = {k for k, _, _ in report.skipped_shape}
    assert skipped == {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias", "aux2.fc2.weight", "aux2.fc2.bias"}
    assert torch.equal(model.aux1.fc1.weight, src["aux1.fc1.weight"])
