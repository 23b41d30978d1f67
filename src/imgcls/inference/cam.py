"""Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization" (ICCV 2017, arXiv:1610.02391).

The map of class c at a layer with activations A_k (k = channels) is ReLU(sum_k w_k A_k), where w_k is
the spatial mean of d score_c / d A_k: the channels that raise the class score, weighted by how much.
The layer defaults to the one the model declares (`cam_layer`: its last feature stage; ViT names the
last block's `ln_1`, see models/vit.py); `layer=` takes any name of `model.named_modules()`.

ViT: a block's output is a token sequence [N, 1 + h*w, D], not a map. The model's own
`to_feature_map` drops the class token and lays the patch tokens back on their h x w grid (row-major,
as the patch embedding flattened them); activations and gradients are both reshaped so, and the map
has one cell per patch.

What an overlay shows: the model sees the eval preprocessing's centre crop (resize the shorter side,
crop the centre square), so the map covers that crop only. `CamResult.image` is that same region cut
from the decoded photo at the photo's own resolution (not the model's small crop), and the heatmap is
stretched over it: what is outside the crop was never seen and is not shown.
"""
from __future__ import annotations

import difflib
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from imgcls.data import Preprocessing, load_image
from imgcls.data.names import safe_name
from imgcls.data.transforms import center_crop_box, resized_size
from imgcls.errors import ConfigError, DataError
from imgcls.inference.predictor import Prediction, Predictor, expand_inputs
from imgcls.paths import write_atomic
from imgcls.reports import Mistake

DISPLAY_MAX = 512  # px: overlays of big photos are drawn at most this wide
_ALPHA = 0.45  # weight of the heatmap over the photo


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module `name` of `model`, or a ConfigError with close names and the model's stages."""
    if not name:  # named_modules() calls the model itself "": not a layer anyone means
        raise ConfigError(f"--layer '': empty; name a module such as {default_layer(model)}, or leave --layer out "
                          "for the model's own choice")
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
    stages = ", ".join(getattr(model, "stage_names", ())) or "none declared"
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"--layer {name!r}: {type(model).__name__} has no such module; {hint}its stages: {stages} "
                      f"(any name of model.named_modules() works)")


def default_layer(model: nn.Module) -> str:
    layer = getattr(model, "cam_layer", None)
    if not layer:
        raise ConfigError(f"{type(model).__name__} declares no Grad-CAM layer (cam_layer); pass --layer NAME")
    return layer


class GradCAM:
    """Grad-CAM maps of one layer of `model` (see the module docstring).

    Safe to call from several threads at once on the same model: the hook keeps only the output of the
    forward pass that runs in the calling thread. The model's weights get no `.grad`.
    """

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        self.model = model.eval()
        self.layer = default_layer(model) if layer is None else layer
        self.module = find_layer(model, self.layer)

    def _as_map(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 3 and hasattr(self.model, "to_feature_map"):  # ViT tokens -> [N, D, h, w]
            try:
                t = self.model.to_feature_map(t)
            except ValueError as e:
                raise ConfigError(f"--layer {self.layer}: {e}; choose an encoder block or its ln_1") from None
        if t.ndim != 4:
            raise ConfigError(f"--layer {self.layer}: its output is {list(t.shape)}, not a feature map [N, C, H, W]; "
                              f"choose a stage such as {default_layer(self.model)}")
        return t

    def __call__(self, x: torch.Tensor, target: int | Sequence[int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [N, classes], maps [N, h, w] >= 0 at the layer's resolution, not normalised, the
        explained class of each image [N]) for a normalised batch `x`; `target` None explains the top-1."""
        me, seen = threading.get_ident(), []

        def keep(module, inputs, output):
            if threading.get_ident() == me and not seen:  # first run wins should a module run twice
                seen.append(output[0] if isinstance(output, (tuple, list)) else output)

        handle = self.module.register_forward_hook(keep)
        try:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)  # the graph reaches the layer even with frozen weights
                out = self.model(x)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                if target is None:
                    targets = logits.detach().argmax(1)
                else:
                    targets = torch.as_tensor([target] * len(x) if isinstance(target, int) else list(target),
                                              device=logits.device)
                if not seen:
                    raise ConfigError(f"--layer {self.layer}: the module did not run in the forward pass; "
                                      f"choose another, e.g. {default_layer(self.model)}")
                score = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
                (grad,) = torch.autograd.grad(score, seen[0], allow_unused=True)
        finally:
            handle.remove()
        acts = self._as_map(seen[0].detach())
        grads = None if grad is None else self._as_map(grad)
        if grads is None or not grads.any():  # e.g. ViT's last block: the head reads only its class token
            raise ConfigError(f"--layer {self.layer}: the logits do not depend on its output (zero gradient); "
                              f"choose another, e.g. {default_layer(self.model)}")
        maps = F.relu((grads.mean((2, 3), keepdim=True) * acts).sum(1))
        return logits.detach().float().cpu(), maps.float().cpu(), targets.cpu()


def crop_box(width: int, height: int, preprocessing: Preprocessing) -> tuple[int, int, int, int]:
    """The eval centre crop of a width x height photo in the photo's own pixels (left, top, right,
    bottom): the region the model sees (beyond the borders where the crop pads)."""
    if preprocessing.crop is None:  # --whole-photo: the model sees all of it
        return 0, 0, width, height
    rw, rh = resized_size(width, height, preprocessing.resize)
    left, top, right, bottom = center_crop_box(rw, rh, preprocessing.crop, preprocessing.crop)
    sx, sy = width / rw, height / rh
    return round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)


def jet(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8 of the classic 'jet' colour map (blue, cyan, yellow, red)."""
    v = values[..., None] * 4
    rgb = np.clip(1.5 - np.abs(v - np.array([3.0, 2.0, 1.0])), 0, 1)
    return (rgb * 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap size
        return ImageFont.load_default()


def caption(image: Image.Image, lines: Sequence[str], *, size: int = 15) -> Image.Image:
    """`image` with `lines` of text on a white strip below it (none: `image` itself)."""
    if not lines:
        return image
    font, pad = _font(size), max(4, size // 3)
    height = pad * 2 + len(lines) * (size + pad)
    out = Image.new("RGB", (image.width, image.height + height), "white")
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(lines):
        while len(text) > 4 and draw.textlength(text, font=font) > image.width - 2 * pad:
            text = text[:-4] + "..."
        draw.text((pad, image.height + pad + i * (size + pad)), text, fill=(20, 20, 20), font=font)
    return out


@dataclass
class CamResult:
    """The Grad-CAM of one image: its prediction, the class explained and the map."""

    prediction: Prediction
    target: str | None = None  # the class explained, and its probability
    target_prob: float = 0.0
    layer: str = ""
    cam: np.ndarray | None = None  # [h, w] float32 at the layer's resolution: ReLU(sum_k w_k A_k), not normalised
    image: Image.Image | None = None  # the centre crop the model saw, at the photo's resolution (<= DISPLAY_MAX)
    per_label: list[CamResult] = field(default_factory=list)  # multi-label: one result per label explained

    @property
    def maps(self) -> np.ndarray:
        """The raw map [h, w], or for a multi-label result one per label [labels, h, w]."""
        return np.stack([r.cam for r in self.per_label]) if self.per_label else self.cam

    @property
    def error(self) -> str | None:
        return self.prediction.error

    def heatmap(self) -> np.ndarray:
        """The map scaled to [0, 1] (by its maximum) and stretched bilinearly over `image`: [H, W] float32."""
        m = torch.from_numpy(self.cam)[None, None]
        m = F.interpolate(m, size=(self.image.height, self.image.width), mode="bilinear", align_corners=False)[0, 0]
        top = float(m.max())
        return (m / top if top > 0 else torch.zeros_like(m)).clamp(0, 1).numpy()

    def overlay(self, lines: Sequence[str] | None = None) -> Image.Image:
        """`image` with the heatmap blended over it and a caption (default: predicted class and
        probability; the explained class when it is another). A multi-label result: the overlays of its
        labels side by side, each captioned with its label, probability and threshold."""
        if self.per_label:
            return grid([r.overlay() for r in self.per_label], columns=len(self.per_label))
        photo = np.asarray(self.image, dtype=np.float32)
        blend = (1 - _ALPHA) * photo + _ALPHA * jet(self.heatmap()).astype(np.float32)
        return caption(Image.fromarray(blend.round().astype(np.uint8)), self.caption_lines() if lines is None else lines)

    def caption_lines(self) -> list[str]:
        p = self.prediction
        if p.multilabel:
            at = p.labels.index(self.target) if self.target in p.labels else None
            return [f"{safe_name(self.target)} {self.target_prob:.1%}" + (
                f" (threshold {p.thresholds[at]:.2f})" if at is not None else " (below its threshold)")]
        lines = [f"{safe_name(p.label)} {p.probs[0]:.1%}"]
        if self.target != p.label:
            lines.append(f"Grad-CAM of {safe_name(self.target)} ({self.target_prob:.1%})")
        return lines


def class_index(classes: Sequence[str], label: str) -> int:
    """The index of class `label`, or a ConfigError listing the classes."""
    if label in classes:
        return list(classes).index(label)
    shown = ", ".join(safe_name(c) for c in list(classes)[:12]) + (f", ... ({len(classes)} in all)" if len(classes) > 12 else "")
    close = difflib.get_close_matches(label, list(classes), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"--class {label!r}: not a class of this model; {hint}its classes: {shown}")


class Explainer:
    """Grad-CAM for a Predictor's model, on its eval preprocessing: `Explainer(predictor).explain(image)`.

    A Predictor without a PyTorch model (an exported ONNX file) has no gradients: ConfigError.
    """

    def __init__(self, predictor: Predictor, *, layer: str | None = None) -> None:
        if getattr(predictor, "model", None) is None:
            raise ConfigError("Grad-CAM needs a PyTorch model with gradients; this model is an exported file: "
                              "explain the checkpoint it was exported from")
        self.predictor = predictor
        self.transform = predictor.preprocessing.eval_transform()
        self.gradcam = GradCAM(predictor.model, layer)

    @property
    def layer(self) -> str:
        return self.gradcam.layer

    def explain(self, image: Image.Image, source: str = "<image>", *, target: str | None = None,
                topk: int = 3, display_max: int = DISPLAY_MAX) -> CamResult:
        """The prediction and Grad-CAM of one RGB image (the top-1 class, or class `target`); the shown
        crop is at most `display_max` pixels wide. A multi-label model without `target` explains each label
        above its threshold (`per_label`; the most probable class when none is), in one pass."""
        pred = self.predictor
        target_idx = None if target is None else class_index(pred.classes, target)
        image = image.convert("RGB")
        crop = torch.from_numpy(np.array(self.transform(image)))[None]  # the centre crop, even under --tta
        x = pred.preprocessing.normalize(crop, pred.device)
        box = crop_box(image.width, image.height, pred.preprocessing)
        side = min(display_max, max(pred.preprocessing.crop or 0, box[2] - box[0]))
        height = side if pred.preprocessing.crop else round(side * image.height / image.width)  # --whole-photo
        shown = image.crop(box).resize((side, height), Image.BILINEAR)
        if pred.multilabel:
            return self._explain_labels(x, source, target_idx, shown)
        logits, maps, targets = self.gradcam(x, target_idx)
        probs = self.predictor.probabilities(logits)[0]
        p, idx = probs.topk(min(topk, len(pred.classes)))
        prediction = Prediction(source, [pred.classes[i] for i in idx.tolist()], p.tolist(), idx.tolist(),
                                unknown=pred.is_unknown(float(p[0])))
        t = int(targets[0])
        return CamResult(prediction, pred.classes[t], float(probs[t]), self.layer, maps[0].numpy(), shown)

    def _explain_labels(self, x: torch.Tensor, source: str, target: int | None, shown: Image.Image) -> CamResult:
        """A multi-label model's result: its labels above their thresholds, and the Grad-CAM of `target` or of
        each of those labels (one batch of copies of the image, one class each)."""
        pred = self.predictor
        probs = pred.probabilities(_logits(pred, x))[0]
        found = pred.above_thresholds(probs[None])[0]
        prediction = Prediction(source, [pred.classes[c] for c in found], [float(probs[c]) for c in found], found,
                                thresholds=[pred.thresholds[c] for c in found])
        explained = [target] if target is not None else found or [int(probs.argmax())]
        _, maps, _ = self.gradcam(x.expand(len(explained), *x.shape[1:]).contiguous(), explained)
        results = [CamResult(prediction, pred.classes[c], float(probs[c]), self.layer, maps[i].numpy(), shown)
                   for i, c in enumerate(explained)]
        if len(results) == 1:
            return results[0]
        return CamResult(prediction, ", ".join(r.target for r in results), results[0].target_prob, self.layer,
                         results[0].cam, shown, per_label=results)

    def explain_paths(self, inputs: Sequence[str | Path], *, target: str | None = None,
                      topk: int = 3) -> Iterator[CamResult]:
        """`explain` for image files, folders or globs, one at a time; an unreadable file gives a result
        whose `error` says why (the others go on)."""
        if target is not None:
            class_index(self.predictor.classes, target)  # refuse a bad --class before any work
        for path in expand_inputs(list(inputs)):
            try:
                image = load_image(path, resize=self.predictor.preprocessing.resize)
            except DataError as e:
                yield CamResult(Prediction(str(path), error=str(e)))
                continue
            yield self.explain(image, str(path), target=target, topk=topk)


@torch.no_grad()
def _logits(predictor: Predictor, x: torch.Tensor) -> torch.Tensor:
    return predictor.model(x).float().cpu()


def save_png(image: Image.Image, path: Path) -> Path:
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def save_npy(array: np.ndarray, path: Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return write_atomic(path, write)


def grid(tiles: Sequence[Image.Image], *, columns: int = 4, gap: int = 6) -> Image.Image:
    """Tiles (any sizes) on a white sheet, `columns` a row, each cell as big as the largest tile."""
    if not tiles:
        raise ValueError("no tiles")
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * w + (cols + 1) * gap, rows * h + (rows + 1) * gap), "white")
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet.paste(tile, (gap + c * (w + gap), gap + r * (h + gap)))
    return sheet


class UniqueNames:
    """A file stem per source (`dir/photo.jpg` -> `photo`), made unique with -2, -3 ... when two sources
    share a stem (dir1/a.jpg, dir2/a.jpg): no output overwrites another of the same run."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, source: str) -> str:
        stem = safe_name(Path(source).stem) or "image"
        name, n = stem, 1
        while name in self.used:
            n += 1
            name = f"{stem}-{n}"
        self.used.add(name)
        return name


def write_cams(explainer: Explainer, inputs: Sequence[str | Path], out_dir: str | Path, *, target: str | None = None,
               topk: int = 3, npy: bool = False, force: bool = False) -> Iterator[tuple[CamResult, Path | None]]:
    """Explain each input and write `<stem>.cam.png` (with `npy`, also the raw map `<stem>.cam.npy`) into
    `out_dir`, each file written whole then renamed; yields (result, the PNG, or None for an unreadable file).

    Refused before any work: an `out_dir` that is a file, and (unless `force`) an output file that is
    already there. Every input gets its name up front, readable or not, so the names follow from the
    inputs alone."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {safe_name(out)} is a file; name a folder for the overlays")
    paths = expand_inputs(list(inputs))
    unique = UniqueNames()
    names = [unique(str(path)) for path in paths]
    suffixes = (".cam.png", ".cam.npy") if npy else (".cam.png",)
    if not force:
        for name in names:
            for suffix in suffixes:
                if (out / f"{name}{suffix}").exists():
                    raise ConfigError(f"{safe_name(out / name)}{suffix} exists already (an earlier imgcls cam?); "
                                      "pass --force to replace it, or choose another -o")
    for name, result in zip(names, explainer.explain_paths(paths, target=target, topk=topk)):
        if result.error:
            yield result, None
            continue
        png = save_png(result.overlay(), out / f"{name}.cam.png")
        if npy:
            save_npy(result.maps, out / f"{name}.cam.npy")
        yield result, png


def mistakes_grid(explainer: Explainer, mistakes: Sequence[Mistake], path: str | Path, *, tile: int = 256,
                  columns: int = 4) -> Path:
    """One PNG a person can scan: the Grad-CAM of each mistake's predicted (wrong) class on its photo,
    captioned with the true class, the prediction and its probability, and the file name."""
    tiles = []
    for m in mistakes:
        image = load_image(m.sample, resize=explainer.predictor.preprocessing.resize)
        result = explainer.explain(image, str(m.sample), target=m.pred, display_max=tile)
        result.image = result.image.resize((tile, tile), Image.BILINEAR)
        tiles.append(result.overlay([f"true {safe_name(m.true)}", f"predicted {safe_name(m.pred)} {m.prob:.1%}",
                                     safe_name(Path(str(m.sample)).name)]))
    return save_png(grid(tiles, columns=columns), Path(path))
