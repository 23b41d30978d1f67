"""`imgcls predict` with a segmentation checkpoint or its exported .onnx file: per photo a palette PNG mask
at the photo's own size (values = class indices, colours = the model's palette), a blended overlay JPEG,
and the share of the photo each class covers. Photos run one at a time at the checkpoint's resize; the class scores are
brought back to the photo's size in bands of rows (bilinear, as one resize would), so memory stays
bounded by the photo itself however large it is."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from imgcls.checkpoint import ModelSource
from imgcls.data import load_array, safe_name
from imgcls.data.transforms import INTERPOLATION, resized_size
from imgcls.errors import DataError
from imgcls.models.seg_parts import padded_forward
from imgcls.paths import write_atomic
from imgcls.runtime import resolve_device

BAND_BYTES = 64 * 2**20  # class scores held at the photo's size at once


@dataclass
class MaskPrediction:
    source: str
    mask: str | None = None
    overlay: str | None = None
    shares: dict[str, float] = field(default_factory=dict)  # class -> share of the photo's pixels
    error: str | None = None


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int], *, band_bytes: int = BAND_BYTES) -> np.ndarray:
    """argmax over classes of `logits` [C, h, w] resized bilinearly (align_corners=False) to `size` (H, W),
    computed in bands of output rows (grid_sample with F.interpolate's sampling positions), so only
    one band of [C, rows, W] scores exists at a time. Equal to F.interpolate(...).argmax(0)."""
    c, h, w = logits.shape
    height, width = size
    rows = max(1, band_bytes // (4 * c * width))
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    out = np.empty((height, width), dtype=np.uint8)
    x = logits[None].float()
    for top in range(0, height, rows):
        ys = (torch.arange(top, min(height, top + rows), dtype=torch.float32) + 0.5) / height * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        band = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[top:top + len(ys)] = band[0].argmax(0).to(torch.uint8).numpy()
    return out


def palette_png(mask: np.ndarray, palette: list) -> Image.Image:
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    flat = [v for c in palette for v in c][:768]
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def overlay(photo: np.ndarray, mask: np.ndarray, palette: list, alpha: float = 0.5) -> Image.Image:
    """The photo with each pixel's class colour blended in at `alpha`."""
    colours = np.zeros((256, 3), dtype=np.float32)
    colours[:len(palette)] = np.asarray(palette, dtype=np.float32)[:256]
    blended = (1 - alpha) * photo.astype(np.float32) + alpha * colours[mask]
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))


def score_function(source: ModelSource, device: str | torch.device = "auto"
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.device]:
    """(normalised float NCHW batch -> class scores [N, C, H, W], the device batches go to) of a segmentation
    source: its network's "out" on `device`, or an exported file's ONNX Runtime runner (on the CPU), each
    run on the batch padded to whole stride-32 cells and cropped back (models.seg_parts.padded_forward), as
    training validated it."""
    if source.network is None:  # files exported before the graph padded itself get padded here (a no-op after)
        runner = source.runner
        return (lambda x: padded_forward(runner, x)), runner.device
    dev = resolve_device(device) if isinstance(device, str) else device
    net = source.network.to(dev).eval()

    def scores(x: torch.Tensor) -> torch.Tensor:
        out = padded_forward(net, x)
        return out["out"] if isinstance(out, dict) else out

    return scores, dev


class MaskPredictor:
    """A segmentation ModelSource (a checkpoint's network, or an exported file's ONNX Runtime runner) as
    masks of photos."""

    def __init__(self, source: ModelSource, *, device: str = "auto") -> None:
        self.source = source
        self.scores, self.device = score_function(source, device)
        self.backend = "pytorch" if source.network is not None else source.runner.backend
        self.pre = source.preprocessing
        self.palette = [tuple(c) for c in (source.labels.get("palette") or [])]

    @property
    def classes(self) -> list[str]:
        return list(self.source.classes)

    @torch.no_grad()
    def mask_of(self, photo: np.ndarray) -> np.ndarray:
        """The class index of every pixel of an HWC uint8 photo, at its size."""
        h, w = photo.shape[:2]
        size = resized_size(w, h, self.pre.resize)
        small = np.asarray(Image.fromarray(photo).resize(size, INTERPOLATION[self.pre.interpolation]))
        x = self.pre.normalize(torch.from_numpy(np.array(small))[None], self.device)
        return upsampled_argmax(self.scores(x)[0].cpu(), (h, w))

    def shares(self, mask: np.ndarray) -> dict[str, float]:
        """Class -> the share of the mask's pixels it covers, for the classes present."""
        counts = np.bincount(mask.ravel(), minlength=len(self.source.classes))
        return {c: float(n / mask.size) for c, n in zip(self.source.classes, counts) if n}

    def predict(self, paths: list[Path], out_dir: Path) -> list[MaskPrediction]:
        """One MaskPrediction per photo; files in `out_dir`: STEM.png (the mask) and STEM_overlay.jpg."""
        out_dir.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        results = []
        for path in paths:
            result = MaskPrediction(safe_name(path))
            try:
                photo = load_array(path, resize=self.pre.resize)
            except DataError as e:
                result.error = str(e).removeprefix(f"{safe_name(path)}: ")
                results.append(result)
                continue
            mask = self.mask_of(photo)
            stem = _unique(path.stem, used)
            mask_file, overlay_file = out_dir / f"{stem}.png", out_dir / f"{stem}_overlay.jpg"
            write_atomic(mask_file, lambda tmp: palette_png(mask, self.palette).save(tmp, format="PNG"))
            write_atomic(overlay_file,
                         lambda tmp: overlay(photo, mask, self.palette).save(tmp, format="JPEG", quality=90))
            result.mask, result.overlay = safe_name(mask_file), safe_name(overlay_file)
            result.shares = self.shares(mask)
            results.append(result)
        return results


def _unique(stem: str, used: set[str]) -> str:
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}-{i}"
    used.add(name)
    return name


def format_masks(results: list[MaskPrediction], *, as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(r) for r in results], indent=2) + "\n"
    lines = []
    for r in results:
        if r.error:
            lines.append(f"{r.source}: error: {r.error}")
            continue
        top = sorted(r.shares.items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"{r.source}: {r.mask}, {r.overlay}; " + ", ".join(f"{c} {100 * s:.1f}%" for c, s in top))
    return "\n".join(lines) + "\n"
