"""Predictions from any model source: `Predictor.load(source).predict(images)`, where the source is a
checkpoint, a registry weights name (efficientnet_lite0.in1k: the 1000 ImageNet classes) or a file
written by `imgcls export` (run by ONNX Runtime: the backend follows the file).

Each source carries the class names and the eval preprocessing, so a prediction needs nothing but
it. Images become normalised float NCHW batches in one code path; a runner (runtime.TorchRunner or
export.OrtRunner) turns a batch into logits. Every input gets an answer: images are batched (the last,
smaller batch included) and an unreadable file comes back as a `Prediction` with its `error` set
instead of stopping the others.
"""
from __future__ import annotations

import glob
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from imgcls.checkpoint import ModelSource, checkpoint_source
from imgcls.data import Preprocessing, load_array, make_loader
from imgcls.data.dataset import list_images
from imgcls.data.decode import is_file_or_link
from imgcls.data.names import safe_name
from imgcls.errors import ConfigError, DataError
from imgcls.inference.source import open_source
from imgcls.progress import track
from imgcls.runtime import TorchRunner, resolve_device


@dataclass
class Prediction:
    source: str
    labels: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a file name that is not UTF-8 is escaped (see data.safe_name)."""
        return {"path": safe_name(self.source), "error": safe_name(self.error) if self.error else None,
                "top": [{"label": safe_name(lab), "index": i, "prob": round(p, 6)}
                        for lab, i, p in zip(self.labels, self.indices, self.probs)]}


def format_predictions(preds: list[Prediction], fmt: str = "text") -> str:
    """What `imgcls predict` prints: "text" (one line a file), "json" (a list of `to_dict()`) or "csv"
    (path, rank, label, prob, error); every name escaped as data.safe_name does."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2) + "\n"
    out = io.StringIO()
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(["path", "rank", "label", "prob", "error"])
        for p in preds:
            if p.error:
                w.writerow([safe_name(p.source), "", "", "", safe_name(p.error)])
            for r, (lab, pr) in enumerate(zip(p.labels, p.probs), start=1):
                w.writerow([safe_name(p.source), r, safe_name(lab), f"{pr:.6f}", ""])
        return out.getvalue()
    for p in preds:
        shown = f"error: {safe_name(p.error)}" if p.error else \
            ", ".join(f"{safe_name(lab)} {pr:.1%}" for lab, pr in zip(p.labels, p.probs))
        out.write(f"{safe_name(p.source)}: {shown}\n")
    return out.getvalue()


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for images (data.list_images), globs expanded; a name
    that matches nothing is a DataError naming it. Broken symbolic links are kept: reading one gives its
    error line, naming the link and its target."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(f"{p}: folder has no images ({', '.join(sorted({'.jpg', '.png', '.webp'}))}, ...)")
            out += found
        elif p.exists() or p.is_symlink():
            out.append(p)
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if is_file_or_link(Path(m)))
            if not matches:
                raise DataError(f"{item}: pattern matches no files")
            out += matches
        else:
            raise DataError(f"{p}: no such file or folder")
    return out


class _Paths(torch.utils.data.Dataset):
    """Decoded + transformed images; a bad file yields a zero image and its error message."""

    def __init__(self, paths: list[Path], transform, min_side: int | None, resize: int, crop: int) -> None:
        self.paths, self.transform, self.min_side, self.resize, self.crop = paths, transform, min_side, resize, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.transform(load_array(self.paths[i], min_side=self.min_side, resize=self.resize)), ""
        except DataError as e:
            return np.zeros((self.crop, self.crop, 3), np.uint8), str(e)


def _collate(batch):
    return torch.from_numpy(np.stack([b[0] for b in batch])), [b[1] for b in batch]


class Predictor:
    def __init__(self, model: nn.Module | None, classes: Sequence[str], preprocessing: Preprocessing, *,
                 device: str | torch.device = "auto", batch_size: int = 32, workers: int | None = 0,
                 draft: bool = False, runner=None) -> None:
        """A PyTorch `model`, or a `runner` (normalised float NCHW batch -> logits; then `model` is
        None, as for an ONNX file). JPEGs decode at full size, so the pixels are torchvision's eval
        pixels (EXIF orientation applied), up to decode.REDUCE_ABOVE_PIXELS (bigger ones decode reduced);
        `draft=True` lets JPEG draft mode decode big ones reduced: faster, pixels differ slightly
        (benchmarks/draft_mode.py measures both)."""
        self.draft = draft
        if runner is None:
            device = resolve_device(device) if isinstance(device, str) else device
            runner = TorchRunner(model, device)
            model = runner.model
        self.runner = runner
        self.device = runner.device
        self.model = model
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.workers = workers
        self.transform = preprocessing.eval_transform()
        self._local = threading.local()  # one normalisation buffer per thread: `imgcls serve` predicts from a pool

    @property
    def backend(self) -> str:
        """"pytorch" or "onnxruntime"."""
        return self.runner.backend

    @property
    def min_side(self) -> int | None:
        """What JPEG decoding may reduce to (draft mode), or None for full-size decoding."""
        return self.preprocessing.resize if self.draft else None

    @classmethod
    def load(cls, source: str | Path | ModelSource, *, device: str | torch.device = "auto",
             threads: int | None = None, **kwargs) -> Predictor:
        """A Predictor for a checkpoint, a registry weights name or an exported .onnx file (run by ONNX
        Runtime with `threads` intra-op threads; its class names and preprocessing come from the file),
        or for a ModelSource already opened (inference.open_source). `kwargs` are the constructor's
        (batch_size, workers, draft)."""
        device = resolve_device(device) if isinstance(device, str) else device
        if not isinstance(source, ModelSource):
            source = open_source(source, device=device, threads=threads)
        if source.task != "classification":
            raise ConfigError(f"{source.name}: a {source.task} model; `imgcls predict` writes its masks "
                              "(inference.seg_predict), `imgcls eval` scores it; cam and serve take classifiers")
        return cls(source.network, source.classes, source.preprocessing, runner=source.runner, device=device,
                   **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> Predictor:
        """A Predictor for an imgcls checkpoint (Predictor.load takes every source)."""
        return cls.load(checkpoint_source(path), **kwargs)

    def _normalized(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch as the model's float input (one kept buffer per thread: used before the next batch)."""
        if getattr(self._local, "normalize", None) is None:
            self._local.normalize = self.preprocessing.normalizer(self.device)
        return self._local.normalize(images)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.runner(self._normalized(images))

    def logits_of_dataset(self, ds, *, progress: bool = False) -> torch.Tensor:
        """Logits for every item of a dataset whose items are (uint8 HWC image, target)."""
        loader = make_loader(ds, batch_size=self.batch_size, workers=self.workers, device=self.device)
        logits = [self._forward(images) for images, _ in track(loader, total=len(loader), desc="evaluating",
                                                               enabled=progress)]
        return torch.cat(logits) if logits else torch.empty(0, len(self.classes))

    def predict(self, images: list[str | Path | Image.Image] | str | Path | Image.Image, *, topk: int = 3) -> list[Prediction]:
        """Top-k labels and probabilities for each image (paths, folders, globs or PIL images); `topk`
        above the number of classes gives every class."""
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        pil = [im for im in images if isinstance(im, Image.Image)]
        if pil and len(pil) != len(images):
            raise DataError("predict() takes either paths or PIL images in one call, not a mix")
        if topk < 1:
            raise ConfigError(f"topk must be >= 1, got {topk}")
        k = min(topk, len(self.classes))
        if pil:
            batch = torch.from_numpy(np.stack([self.transform(im.convert("RGB")) for im in pil]))
            return self._top(self._forward(batch), ["<image %d>" % i for i in range(len(pil))], [""] * len(pil), k)
        paths = expand_inputs(list(images))
        ds = _Paths(paths, self.transform, self.min_side, self.preprocessing.resize, self.preprocessing.crop)
        loader = torch.utils.data.DataLoader(ds, batch_size=self.batch_size, num_workers=self.workers or 0,
                                             collate_fn=_collate)
        preds: list[Prediction] = []
        offset = 0
        for batch, errors in loader:
            names = [str(p) for p in paths[offset:offset + len(errors)]]
            preds += self._top(self._forward(batch), names, errors, k)
            offset += len(errors)
        return preds

    def _top(self, logits: torch.Tensor, names: list[str], errors: list[str], k: int) -> list[Prediction]:
        probs = logits.softmax(1)
        p, idx = probs.topk(k, dim=1)
        out = []
        for name, err, pi, ii in zip(names, errors, p.tolist(), idx.tolist()):
            if err:
                out.append(Prediction(name, error=err))
            else:
                out.append(Prediction(name, [self.classes[i] for i in ii], pi, ii))
        return out
