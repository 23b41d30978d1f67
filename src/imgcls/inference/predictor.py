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

from imgcls.checkpoint import Calibration, ModelSource, checkpoint_source
from imgcls.data import Preprocessing, load_array, make_loader
from imgcls.data.dataset import list_images
from imgcls.data.decode import is_file_or_link
from imgcls.data.names import safe_name
from imgcls.data.tta import TTAViews, parse_tta
from imgcls.errors import ConfigError, DataError
from imgcls.inference.abstain import UNKNOWN, parse_abstain, stored_threshold
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
    unknown: bool = False  # the top probability is below the --abstain threshold
    thresholds: list[float] | None = None  # multi-label: each listed label's threshold (the labels above theirs)

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    @property
    def multilabel(self) -> bool:
        return self.thresholds is not None

    @property
    def answer(self) -> str | None:
        """The top label, or "unknown" when the model abstains; a multi-label model's labels above their
        thresholds joined by ';' ("" for none); None for an unreadable file."""
        if self.multilabel and not self.error:
            return ";".join(self.labels)
        return None if self.error or not self.labels else UNKNOWN if self.unknown else self.labels[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a file name that is not UTF-8 is escaped (see data.safe_name). A multi-label
        prediction's "answer" is the list of labels above their thresholds, "labels" each one with its
        probability and threshold."""
        if self.multilabel:
            return {"path": safe_name(self.source), "error": safe_name(self.error) if self.error else None,
                    "answer": [safe_name(lab) for lab in self.labels],
                    "labels": [{"label": safe_name(lab), "index": i, "prob": round(p, 6), "threshold": round(t, 6)}
                               for lab, i, p, t in zip(self.labels, self.indices, self.probs, self.thresholds)]}
        answer = self.answer
        return {"path": safe_name(self.source), "error": safe_name(self.error) if self.error else None,
                "answer": safe_name(answer) if answer is not None and not self.unknown else answer,
                "top": [{"label": safe_name(lab), "index": i, "prob": round(p, 6)}
                        for lab, i, p in zip(self.labels, self.indices, self.probs)]}


def format_predictions(preds: list[Prediction], fmt: str = "text") -> str:
    """What `imgcls predict` prints: "text" (one line a file; "unknown (...)" where the model abstains),
    "json" (a list of `to_dict()`: its "answer" is the top label or "unknown") or "csv" (path, rank, label,
    prob, error, answer); every name escaped as data.safe_name does."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2) + "\n"
    out = io.StringIO()
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(["path", "rank", "label", "prob", "error", "answer"])
        for p in preds:
            if p.error:
                w.writerow([safe_name(p.source), "", "", "", safe_name(p.error), ""])
            for r, (lab, pr) in enumerate(zip(p.labels, p.probs), start=1):
                w.writerow([safe_name(p.source), r, safe_name(lab), f"{pr:.6f}", "", safe_name(p.answer)])
        return out.getvalue()
    for p in preds:
        shown = f"error: {safe_name(p.error)}" if p.error else \
            ", ".join(f"{safe_name(lab)} {pr:.1%}" for lab, pr in zip(p.labels, p.probs))
        if p.multilabel and not p.error and not p.labels:
            shown = "no label above its threshold"
        out.write(f"{safe_name(p.source)}: {f'{UNKNOWN} ({shown})' if p.unknown else shown}\n")
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

    def __init__(self, paths: list[Path], transform, min_side: int | None, resize: int, blank: tuple[int, ...]) -> None:
        """`blank`: the leading dimensions of what a bad file gives: (crop,), or (views, crop) under TTA."""
        self.paths, self.transform, self.min_side, self.resize, self.blank = paths, transform, min_side, resize, blank

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.transform(load_array(self.paths[i], min_side=self.min_side, resize=self.resize)), ""
        except DataError as e:
            return np.zeros((*self.blank, self.blank[-1], 3), np.uint8), str(e)


def _collate(batch):
    return torch.from_numpy(np.stack([b[0] for b in batch])), [b[1] for b in batch]


class Predictor:
    def __init__(self, model: nn.Module | None, classes: Sequence[str], preprocessing: Preprocessing, *,
                 device: str | torch.device = "auto", batch_size: int = 32, workers: int | None = 0,
                 draft: bool = False, runner=None, temperature: float = 1.0, abstain: float | None = None,
                 tta: str | Sequence[str] | None = None, thresholds: Sequence[float] | None = None) -> None:
        """A PyTorch `model`, or a `runner` (normalised float NCHW batch -> logits; then `model` is
        None, as for an ONNX file). Probabilities are softmax(logits / `temperature`): the temperature
        fitted on val at the end of training (checkpoint.Calibration; 1 for a model without one). With
        `abstain`, a prediction whose top probability is below it is marked unknown. `tta` ("flip",
        "crops", "flip,crops": data.tta) runs torchvision's multi-crop views of each image and averages their
        probabilities. JPEGs decode at full size, so the pixels are torchvision's eval
        pixels (EXIF orientation applied), up to decode.REDUCE_ABOVE_PIXELS (bigger ones decode reduced);
        `draft=True` lets JPEG draft mode decode big ones reduced: faster, pixels differ slightly
        (benchmarks/draft_mode.py measures both). `thresholds` (one per class) makes it a multi-label
        predictor: sigmoid probabilities, and a prediction lists every class at or above its threshold."""
        self.draft = draft
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
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
        self.tta = parse_tta(tta)
        self.transform = TTAViews(preprocessing, self.tta) if self.tta else preprocessing.eval_transform()
        self.temperature = float(temperature)
        self.abstain = abstain
        self.calibration = Calibration(self.temperature)  # load() keeps the source's whole record
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
             threads: int | None = None, abstain: str | float | None = None, **kwargs) -> Predictor:
        """A Predictor for a checkpoint, a registry weights name or an exported .onnx file (run by ONNX
        Runtime with `threads` intra-op threads; its class names and preprocessing come from the file),
        or for a ModelSource already opened (inference.open_source). `abstain`: a probability, or
        "precision:Q" for the threshold the source's calibration stores (inference.abstain). `kwargs` are the
        constructor's (batch_size, workers, draft, tta)."""
        rule = parse_abstain(abstain)  # a malformed value is refused before the model is opened
        parse_tta(kwargs.get("tta"))
        device = resolve_device(device) if isinstance(device, str) else device
        if not isinstance(source, ModelSource):
            source = open_source(source, device=device, threads=threads)
        if source.task not in ("classification", "multilabel"):
            raise ConfigError(f"{source.name}: a {source.task} model; `imgcls predict` writes its masks "
                              "(inference.seg_predict), `imgcls eval` scores it, `imgcls serve` shows them; "
                              "cam takes classifiers")
        thresholds = None
        if source.task == "multilabel":
            if rule is not None:
                raise ConfigError(f"--abstain: {source.name} is a multi-label model, which lists every label above its "
                                  "own threshold (chosen on val) and may list none; drop --abstain")
            thresholds = source.calibration.thresholds_for(len(source.classes), source.name)
        threshold = None if rule is None else stored_threshold(rule, source.calibration, source.name)
        predictor = cls(source.network, source.classes, source.preprocessing, runner=source.runner, device=device,
                        temperature=source.calibration.temperature, abstain=threshold, thresholds=thresholds,
                        **kwargs)
        predictor.calibration = source.calibration
        return predictor

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
        """Logits [B, C] of a uint8 batch [B, H, W, 3]; under TTA [B, V, C] of a batch of views [B, V, H, W, 3]."""
        if images.ndim == 5:
            b, v = images.shape[:2]
            return self.runner(self._normalized(images.flatten(0, 1))).reshape(b, v, -1)
        return self.runner(self._normalized(images))

    def logits_of_dataset(self, ds, *, progress: bool = False) -> torch.Tensor:
        """Logits for every item of a dataset whose items are (uint8 HWC image, target): [N, C], or
        [N, V, C] under TTA (the transform gives V views; `probabilities` averages them)."""
        loader = make_loader(ds, batch_size=self.batch_size, workers=self.workers, device=self.device)
        logits = [self._forward(images) for images, _ in track(loader, total=len(loader), desc="evaluating",
                                                               enabled=progress)]
        return torch.cat(logits) if logits else torch.empty(0, *([self.transform.views] if self.tta else []),
                                                            len(self.classes))

    def predict(self, images: list[str | Path | Image.Image] | str | Path | Image.Image, *, topk: int = 3) -> list[Prediction]:
        """Top-k labels and probabilities for each image (paths, folders, globs or PIL images); `topk`
        above the number of classes gives every class. A multi-label model gives every label at or above its
        threshold instead (`topk` unused)."""
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
        blank = (self.transform.views, self.preprocessing.crop) if self.tta else (self.preprocessing.crop,)
        ds = _Paths(paths, self.transform, self.min_side, self.preprocessing.resize, blank)
        loader = torch.utils.data.DataLoader(ds, batch_size=self.batch_size, num_workers=self.workers or 0,
                                             collate_fn=_collate)
        preds: list[Prediction] = []
        offset = 0
        for batch, errors in loader:
            names = [str(p) for p in paths[offset:offset + len(errors)]]
            preds += self._top(self._forward(batch), names, errors, k)
            offset += len(errors)
        return preds

    def probabilities(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """The model's calibrated probabilities [N, C]: softmax(logits / temperature) (the model's own unless
        given; a multi-label model's: each class's sigmoid), averaged over the views of [N, V, C] TTA logits."""
        if self.multilabel:
            probs = logits.float().sigmoid()
            return probs.mean(1) if probs.ndim == 3 else probs
        probs = (logits.float() / (self.temperature if temperature is None else temperature)).softmax(-1)
        return probs.mean(1) if probs.ndim == 3 else probs

    @property
    def multilabel(self) -> bool:
        """Whether the model lists any number of labels per image (sigmoid outputs, per-class thresholds)."""
        return self.thresholds is not None

    def above_thresholds(self, probs: torch.Tensor) -> list[list[int]]:
        """A multi-label model's answer for [N, C] probabilities: each image's classes at or above their
        thresholds, most probable first."""
        keep = probs >= torch.tensor(self.thresholds, dtype=probs.dtype)
        return [sorted(row.nonzero().flatten().tolist(), key=lambda c, p=p: -float(p[c]))
                for row, p in zip(keep, probs)]

    def is_unknown(self, top_prob: float) -> bool:
        """Whether the model abstains on a prediction made with this top probability."""
        return self.abstain is not None and top_prob < self.abstain

    def _top(self, logits: torch.Tensor, names: list[str], errors: list[str], k: int) -> list[Prediction]:
        probs = self.probabilities(logits)
        if self.multilabel:
            return [Prediction(name, error=err) if err else
                    Prediction(name, [self.classes[c] for c in found], [float(pi[c]) for c in found], found,
                               thresholds=[self.thresholds[c] for c in found])
                    for name, err, pi, found in zip(names, errors, probs, self.above_thresholds(probs))]
        p, idx = probs.topk(k, dim=1)
        out = []
        for name, err, pi, ii in zip(names, errors, p.tolist(), idx.tolist()):
            if err:
                out.append(Prediction(name, error=err))
            else:
                out.append(Prediction(name, [self.classes[i] for i in ii], pi, ii, unknown=self.is_unknown(pi[0])))
        return out
