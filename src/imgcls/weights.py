"""Pretrained weights: where they come from, how they are fetched, and how they fit a model.

Three steps, each usable alone:

1. `resolve_weights("resnet18")` turns a registry name (or a file path) into a local file: the
   official torchvision file, cached under `default_weights_dir()`, downloaded (resumably, hash
   checked) when missing. Offline, it says in one line where to put the file by hand.
2. `read_state_dict(path)` reads a plain torchvision state dict, an imgcls checkpoint, a Lightning
   checkpoint or a safetensors file, safely (`weights_only=True`, never arbitrary unpickling), and
   strips the `module.` (DDP) / `_orig_mod.` (torch.compile) prefixes.
3. `load_pretrained(model, state_dict)` copies every tensor whose name and shape match; only the
   classifier may disagree (a 1000-way ImageNet head in a 5-class model) and starts fresh. The
   `LoadReport` says what loaded and what did not; anything else that does not fit is an error.

`load_weights(model, "resnet18")` chains the three. Our models use torchvision's module names
(see `imgcls.models.resnet`), so the official files load without any key renaming.
"""
from __future__ import annotations

import difflib
import fnmatch
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.errors import WeightsError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TORCHVISION_URL = "https://download.pytorch.org/models/"
# torchvision's file names end in the first hex digits of the file's sha256: resnet18-f37072fd.pth
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")
_HEX_HASH = re.compile(r"[0-9a-f]{6,64}")
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".tar")
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightSpec:
    """One pretrained weight file and everything needed to use it.

    `sha256` is the hash *prefix* torchvision puts in the file name (`resnet18-f37072fd.pth` ->
    "f37072fd"). torchvision's own check (`torch.hub.download_url_to_file(hash_prefix=...)`)
    compares exactly that prefix of the file's sha256, and so do we; a full 64-hex-digit hash is
    accepted too (it is just a longer prefix). `preprocessing` holds the keyword arguments of
    `imgcls.data.transforms.eval_transform` that reproduce the published accuracy `acc1`.
    """

    name: str
    arch: str
    url: str
    sha256: str
    num_classes: int = 1000
    preprocessing: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    acc1: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not _HEX_HASH.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 6 to 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def filename(self) -> str:
        """The cache file name: the last component of the URL (torchvision's, hash included)."""
        return Path(urllib.parse.urlparse(self.url).path).name


def imagenet_preprocessing(resize: int = 256, crop: int = 224) -> dict[str, Any]:
    """torchvision's `ImageClassification` preset: resize the short side, centre crop, normalise."""
    return {"resize": resize, "crop": crop, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "interpolation": "bilinear"}


def _torchvision(name: str, arch: str, filename: str, acc1: float, *, resize: int = 256, source: str) -> WeightSpec:
    return WeightSpec(name=name, arch=arch, url=_TORCHVISION_URL + filename,
                      sha256=_HASH_IN_NAME.search(filename).group(1), num_classes=1000,
                      preprocessing=imagenet_preprocessing(resize), acc1=acc1, source=source)


# name: (arch, file under download.pytorch.org/models, ImageNet-1k top-1 as torchvision publishes
# it, resize before the 224 crop, torchvision's enum member). "tv_in1k" is IMAGENET1K_V1 (the
# original recipe, resize 256); "tv2_in1k" is IMAGENET1K_V2 (the 2021 recipe, evaluated at
# resize 232). resnext101_64x4d only ever had new-recipe weights, published as V1.
# A new family is new rows here, e.g. "vgg16.tv_in1k": ("vgg16", "vgg16-397923af.pth", 71.592).
_TORCHVISION_WEIGHTS: dict[str, tuple[str, str, float, int, str]] = {
    "resnet18.tv_in1k": ("resnet18", "resnet18-f37072fd.pth", 69.758, 256, "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34.tv_in1k": ("resnet34", "resnet34-b627a593.pth", 73.314, 256, "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50.tv_in1k": ("resnet50", "resnet50-0676ba61.pth", 76.130, 256, "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet50.tv2_in1k": ("resnet50", "resnet50-11ad3fa6.pth", 80.858, 232, "ResNet50_Weights.IMAGENET1K_V2"),
    "resnet101.tv_in1k": ("resnet101", "resnet101-63fe2227.pth", 77.374, 256, "ResNet101_Weights.IMAGENET1K_V1"),
    "resnet101.tv2_in1k": ("resnet101", "resnet101-cd907fc2.pth", 81.886, 232, "ResNet101_Weights.IMAGENET1K_V2"),
    "resnet152.tv_in1k": ("resnet152", "resnet152-394f9c45.pth", 78.312, 256, "ResNet152_Weights.IMAGENET1K_V1"),
    "resnet152.tv2_in1k": ("resnet152", "resnet152-f82ba261.pth", 82.284, 232, "ResNet152_Weights.IMAGENET1K_V2"),
    "resnext50_32x4d.tv_in1k": ("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth", 77.618, 256,
                                "ResNeXt50_32X4D_Weights.IMAGENET1K_V1"),
    "resnext50_32x4d.tv2_in1k": ("resnext50_32x4d", "resnext50_32x4d-1a0047aa.pth", 81.198, 232,
                                 "ResNeXt50_32X4D_Weights.IMAGENET1K_V2"),
    "resnext101_32x8d.tv_in1k": ("resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth", 79.312, 256,
                                 "ResNeXt101_32X8D_Weights.IMAGENET1K_V1"),
    "resnext101_32x8d.tv2_in1k": ("resnext101_32x8d", "resnext101_32x8d-110c445d.pth", 82.834, 232,
                                  "ResNeXt101_32X8D_Weights.IMAGENET1K_V2"),
    "resnext101_64x4d.tv_in1k": ("resnext101_64x4d", "resnext101_64x4d-173b62eb.pth", 83.246, 232,
                                 "ResNeXt101_64X4D_Weights.IMAGENET1K_V1"),
    "wide_resnet50_2.tv_in1k": ("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth", 78.468, 256,
                                "Wide_ResNet50_2_Weights.IMAGENET1K_V1"),
    "wide_resnet50_2.tv2_in1k": ("wide_resnet50_2", "wide_resnet50_2-9ba9bcbe.pth", 81.602, 232,
                                 "Wide_ResNet50_2_Weights.IMAGENET1K_V2"),
    "wide_resnet101_2.tv_in1k": ("wide_resnet101_2", "wide_resnet101_2-32ee1156.pth", 78.848, 256,
                                 "Wide_ResNet101_2_Weights.IMAGENET1K_V1"),
    "wide_resnet101_2.tv2_in1k": ("wide_resnet101_2", "wide_resnet101_2-d733dc28.pth", 82.510, 232,
                                  "Wide_ResNet101_2_Weights.IMAGENET1K_V2"),
    "alexnet.tv_in1k": ("alexnet", "alexnet-owt-7be5be79.pth", 56.522, 256, "AlexNet_Weights.IMAGENET1K_V1"),
    # googlenet's file was trained with transform_input=True: build it with that option to reproduce the 69.8%;
    # densenet files use the legacy `norm.1` key names, remapped on load.
    "vgg11.tv_in1k": ("vgg11", "vgg11-8a719046.pth", 69.020, 256, "VGG11_Weights.IMAGENET1K_V1"),
    "vgg11_bn.tv_in1k": ("vgg11_bn", "vgg11_bn-6002323d.pth", 70.370, 256, "VGG11_BN_Weights.IMAGENET1K_V1"),
    "vgg13.tv_in1k": ("vgg13", "vgg13-19584684.pth", 69.928, 256, "VGG13_Weights.IMAGENET1K_V1"),
    "vgg13_bn.tv_in1k": ("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, 256, "VGG13_BN_Weights.IMAGENET1K_V1"),
    "vgg16.tv_in1k": ("vgg16", "vgg16-397923af.pth", 71.592, 256, "VGG16_Weights.IMAGENET1K_V1"),
    "vgg16_bn.tv_in1k": ("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.360, 256, "VGG16_BN_Weights.IMAGENET1K_V1"),
    "vgg19.tv_in1k": ("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 256, "VGG19_Weights.IMAGENET1K_V1"),
    "vgg19_bn.tv_in1k": ("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, 256, "VGG19_BN_Weights.IMAGENET1K_V1"),
    "googlenet.tv_in1k": ("googlenet", "googlenet-1378be20.pth", 69.778, 256, "GoogLeNet_Weights.IMAGENET1K_V1"),
    "mobilenet_v2.tv_in1k": ("mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878, 256, "MobileNet_V2_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_large.tv_in1k": ("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 74.042, 256, "MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_small.tv_in1k": ("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668, 256, "MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
    "densenet121.tv_in1k": ("densenet121", "densenet121-a639ec97.pth", 74.434, 256, "DenseNet121_Weights.IMAGENET1K_V1"),
    "densenet161.tv_in1k": ("densenet161", "densenet161-8d451a50.pth", 77.138, 256, "DenseNet161_Weights.IMAGENET1K_V1"),
    "densenet169.tv_in1k": ("densenet169", "densenet169-b2777c0a.pth", 75.600, 256, "DenseNet169_Weights.IMAGENET1K_V1"),
    "densenet201.tv_in1k": ("densenet201", "densenet201-c1103571.pth", 76.896, 256, "DenseNet201_Weights.IMAGENET1K_V1"),
    "vit_b_16.tv_in1k": ("vit_b_16", "vit_b_16-c867db91.pth", 81.072, 256, "ViT_B_16_Weights.IMAGENET1K_V1"),
    "vit_b_32.tv_in1k": ("vit_b_32", "vit_b_32-d86f8d99.pth", 75.912, 256, "ViT_B_32_Weights.IMAGENET1K_V1"),
}

WEIGHTS: dict[str, WeightSpec] = {
    name: _torchvision(name, arch, filename, acc1, resize=resize, source=f"torchvision {member}")
    for name, (arch, filename, acc1, resize, member) in _TORCHVISION_WEIGHTS.items()
}

# The bare model name means its torchvision V1 weights, the ones `pretrained=True` used to give.
_ALIASES: dict[str, str] = {spec.arch: name for name, spec in WEIGHTS.items() if name.endswith(".tv_in1k")}


def list_weights(pattern: str | None = None) -> list[str]:
    """Registered weight names, sorted; `pattern` is a shell-style filter such as 'resnet50.*'."""
    names = sorted(WEIGHTS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _lookup(name: str) -> WeightSpec | None:
    return WEIGHTS.get(name) or (WEIGHTS[_ALIASES[name]] if name in _ALIASES else None)


def get_weight_spec(name: str) -> WeightSpec:
    """The spec registered as `name` ("resnet18.tv_in1k") or for the bare model name ("resnet18")."""
    spec = _lookup(name)
    if spec is None:
        close = difflib.get_close_matches(name, [*WEIGHTS, *_ALIASES], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise WeightsError(f"unknown weights {name!r}{hint} (see imgcls.weights.list_weights())")
    return spec


# ---------------------------------------------------------------------------------------------
# fetching
# ---------------------------------------------------------------------------------------------

def default_weights_dir() -> Path:
    """$IMGCLS_HOME/weights, else $XDG_CACHE_HOME/imgcls/weights, else ~/.cache/imgcls/weights."""
    if os.environ.get("IMGCLS_HOME"):
        return Path(os.environ["IMGCLS_HOME"]).expanduser() / "weights"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "imgcls" / "weights"
    return Path.home() / ".cache" / "imgcls" / "weights"


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


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm  # a dependency, imported here so importing imgcls.weights stays light
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)


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
            bar = _progress_bar(total, offset, dest.name, progress)
            try:
                with open(part, "ab" if offset else "wb") as f:
                    while chunk := response.read(_CHUNK):
                        f.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            finally:
                if bar is not None:
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


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

# The keys under which known checkpoint formats keep the model's tensors: imgcls's own checkpoints
# ("model"), Lightning ("state_dict"), the PyTorch tutorials' habit ("model_state_dict").
_STATE_KEYS = ("model", "state_dict", "model_state_dict")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Only a prefix every key shares: a model may well have a submodule named `module`.
    while state:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise WeightsError(f"{path}: reading .safetensors files needs the safetensors package: "
                           "pip install safetensors") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError and OSErrors
        raise WeightsError(f"{path}: cannot read this safetensors file ({' '.join(str(e).split())})") from None
    return state, meta


def _pickle_imports(data: bytes) -> list[str]:
    """The `module.name` globals a pickle stream would import, read with pickletools (nothing runs)."""
    import pickletools

    names, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif op.name == "GLOBAL":
                names.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # noqa: BLE001 - a damaged stream: report what was read before the damage
        pass
    return names


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of a torch file: data.pkl inside the zip container, or the file itself."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else b""
    return path.read_bytes()


_SAFE_MODULES = ("torch", "collections", "numpy", "builtins", "_codecs")


def unreadable_reason(path: Path, error: BaseException) -> str:
    """Why torch.load(weights_only=True) refused `path`, in words that never suggest turning the safety
    check off: an empty file, a pickle that would import and run code, or not a PyTorch file at all."""
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        return "it is an empty file (0 bytes)"
    with path.open("rb") as f:
        head = f.read(512)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # neither torch's zip nor a pickle
        text = head.lstrip().lower()
        kind = ("an HTML page" if text.startswith((b"<!doctype html", b"<html")) else
                "text" if all(32 <= c < 127 or c in (9, 10, 13) for c in head) else "binary data of another kind")
        return f"it is {kind}, not a PyTorch weights file"
    try:
        imports = _pickle_imports(_pickle_bytes(path))
    except Exception:  # noqa: BLE001 - a damaged container
        imports = []
    code = [n for n in imports if not n.startswith(_SAFE_MODULES)]
    if code:
        return (f"it would import and run code ({', '.join(sorted(set(code))[:3])}); imgcls refuses to run code "
                "from a weights file: re-save only the tensors, e.g. torch.save(model.state_dict(), path)")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "Weights only load failed" in first:
        first = "it holds objects other than tensors, numbers, strings, lists and dicts"
    return f"it is damaged or not a weights file imgcls can read safely ({first[:120]})"


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated zip (RuntimeError), an empty file (EOFError), a pickle ...
        raise WeightsError(f"{path}: cannot be read as weights: {unreadable_reason(path, e)}") from None


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The model tensors of a weight file and whatever else the file holds (its metadata).

    Reads `.safetensors` with safetensors, anything else with `torch.load(weights_only=True)`.
    A plain state dict comes back with `{}` as metadata; a checkpoint dict (imgcls: "model",
    Lightning: "state_dict") gives its state dict and the other entries ("meta", "config",
    "classes", "epoch", ...). A `module.` or `_orig_mod.` prefix shared by every key is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    else:
        obj = _read_torch(path)
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{path}: not a state dict (the file holds a {type(obj).__name__})")
        key = next((k for k in _STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        state = dict(obj[key]) if key else dict(obj)
        meta = {k: v for k, v in obj.items() if k != key} if key else {}
    if not state:
        raise WeightsError(f"{path}: the state dict is empty")
    bad = next((k for k, v in state.items() if not isinstance(k, str)
                or not (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))), None)
    if bad is not None:
        raise WeightsError(f"{path}: not a state dict: entry {bad!r} holds a {type(state[bad]).__name__}, "
                           f"not a tensor (top-level keys: {', '.join(map(str, list(state)[:5]))})")
    return _strip_wrapper_prefixes(state), meta


# ---------------------------------------------------------------------------------------------
# loading into a model
# ---------------------------------------------------------------------------------------------

def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _fmt_keys(keys: list[str], limit: int = 5) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclass
class LoadReport:
    """What `load_pretrained` did with each tensor of the file and of the model."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    classifier_name: str | None = None
    extra_heads: tuple[str, ...] = ()  # further class-sized layers, e.g. GoogLeNet's aux1.fc2, aux2.fc2

    def _in_head(self, key: str) -> bool:
        heads = ((self.classifier_name,) if self.classifier_name is not None else ()) + self.extra_heads
        return any(key.startswith(h + ".") for h in heads)

    @property
    def total(self) -> int:
        """The number of tensors in the model's state dict."""
        return len(self.loaded) + len(self.skipped_shape) + len(self.missing)

    @property
    def head_only(self) -> bool:
        """True when every tensor that did not load belongs to the classifier (vacuously when all did)."""
        keys = [k for k, _, _ in self.skipped_shape] + self.missing + self.unexpected
        return all(self._in_head(k) for k in keys)

    def to_text(self) -> str:
        lines = [f"loaded {len(self.loaded)}/{self.total} tensors from {self.source}"]
        head_skipped = [s for s in self.skipped_shape if self._in_head(s[0])]
        if head_skipped:
            key, file_shape, model_shape = next((s for s in head_skipped if s[0].endswith(".weight")), head_skipped[0])
            classes = f" ({model_shape[0]} classes)" if key.endswith(".weight") and model_shape else ""
            lines.append(f"the last layer cannot take the pretrained parameters: {key} is {_fmt_shape(file_shape)} "
                         f"in the file and {_fmt_shape(model_shape)} in the model{classes}; "
                         "it starts from a fresh initialisation")
        head_missing = [k for k in self.missing if self._in_head(k)]
        if head_missing:
            lines.append(f"the file has no classifier ({_fmt_keys(head_missing)}); "
                         "the last layer starts from a fresh initialisation")
        head_unexpected = [k for k in self.unexpected if self._in_head(k)]
        if head_unexpected:
            lines.append(f"the file's classifier is not used, the model has none: {_fmt_keys(head_unexpected)}")
        other_skipped = [f"{k} {_fmt_shape(f)} in the file, {_fmt_shape(m)} in the model"
                         for k, f, m in self.skipped_shape if not self._in_head(k)]
        for label, keys in (("skipped for a shape mismatch", other_skipped),
                            ("missing from the file", [k for k in self.missing if not self._in_head(k)]),
                            ("unexpected in the file", [k for k in self.unexpected if not self._in_head(k)])):
            if keys:
                lines.append(f"{label}: {_fmt_keys(keys)}")
        return "\n".join(lines)


def load_pretrained(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights",
                    classifier_name: str | None = None) -> LoadReport:
    """Copy every tensor of `state_dict` whose name and shape match into `model`; report the rest.

    Only the classifier (`classifier_name`, by default the model's own, e.g. "fc" or
    "classifier.6", plus the model's `extra_head_names` such as GoogLeNet's auxiliary outputs) may
    disagree with the file: a different number of classes, or a headless
    model or file. Those tensors are skipped and keep the model's fresh initialisation. Anything
    else that is mismatched, missing or unexpected raises WeightsError and loads nothing. A model
    with a `remap_state_dict(state_dict)` method (legacy key names) has it applied first.
    """
    remap = getattr(model, "remap_state_dict", None)
    if callable(remap):
        state_dict = remap(dict(state_dict))
    head = classifier_name if classifier_name is not None else getattr(model, "classifier_name", None)
    report = LoadReport(source=source, classifier_name=head,
                        extra_heads=tuple(getattr(model, "extra_head_names", ())) if classifier_name is None else ())
    model_state = model.state_dict()
    filtered: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in model_state:
            report.unexpected.append(key)
            continue
        file_shape, model_shape = tuple(getattr(value, "shape", ())), tuple(getattr(model_state[key], "shape", ()))
        if file_shape != model_shape:  # (`_extra_state` entries need not be tensors: no shape)
            report.skipped_shape.append((key, file_shape, model_shape))
        else:
            filtered[key] = value
            report.loaded.append(key)
    report.missing = [k for k in model_state if k not in state_dict]

    if not report.head_only:
        _raise_misfit(model, report, model_state, state_dict)
    result = model.load_state_dict(filtered, strict=False)
    # load_state_dict's own bookkeeping must agree with ours: what it lacks is what we held back
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) == set(report.missing) | {k for k, _, _ in report.skipped_shape}
    return report


def _raise_misfit(model: nn.Module, report: LoadReport, model_state: Mapping[str, torch.Tensor],
                  state_dict: Mapping[str, torch.Tensor]) -> None:
    """The one-line WeightsError for a file that does not fit beyond the classifier."""
    name = type(model).__name__
    if not report.loaded:
        raise WeightsError(
            f"{report.source}: none of its {len(state_dict)} tensors fits this {name} (its keys look like "
            f"{_fmt_keys(list(state_dict), 3)}; the model's like {_fmt_keys(list(model_state), 3)}); "
            "is it a weight file for another architecture?")
    shape = [(k, f, m) for k, f, m in report.skipped_shape if not report._in_head(k)]
    missing = [k for k in report.missing if not report._in_head(k)]
    unexpected = [k for k in report.unexpected if not report._in_head(k)]
    counts = [f"{n} {what}" for n, what in ((len(shape), "of another shape"), (len(missing), "missing from the file"),
                                           (len(unexpected), "unexpected")) if n]
    examples = [f"{k} is {_fmt_shape(f)} in the file and {_fmt_shape(m)} in the model" for k, f, m in shape[:1]]
    examples += [f"missing {k}" for k in missing[:1]] + [f"unexpected {k}" for k in unexpected[:1]]
    raise WeightsError(
        f"{report.source} does not fit this {name} (tensors: {', '.join(counts)}; e.g. {'; '.join(examples)}); "
        "is it a weight file for another architecture or depth (e.g. resnet50 weights for a resnet18)?")


def load_weights(model: nn.Module, name_or_path: str | os.PathLike | WeightSpec, *,
                 cache_dir: str | os.PathLike | None = None, download_missing: bool = True) -> LoadReport:
    """`resolve_weights`, `read_state_dict` and `load_pretrained` in one call."""
    path = resolve_weights(name_or_path, cache_dir=cache_dir, download_missing=download_missing)
    state, _ = read_state_dict(path)
    return load_pretrained(model, state, source=path.name)
