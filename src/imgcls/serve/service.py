"""What the web app runs, without the web framework: the model behind it (`ModelService`: decode an
upload, predict, Grad-CAM, the model card) and the bounded worker pool that runs it (`BoundedPool`).

Memory per request is bounded by design: the uploads' headers are read first and the request is refused
(TooBig) when decoding and resizing them all would take more than its pixel budget; then they are
decoded one at a time (a JPEG above data.decode.REDUCE_ABOVE_PIXELS reduced to the model's resize side)
and each is kept only at the model's resize, so a request never holds more than one full decode.

A segmentation model (a checkpoint or its exported .onnx file) gets `MaskService`, the ModelService of
masks: POST /predict gives, per upload, the share of its pixels each class covers and the mask itself as
a palette PNG (data URL) at the size the photo was decoded to, which the page lays over the photo.
Uploads are decoded and bounded exactly as for a classifier; a mask is predicted one photo at a time
(inference.seg_predict.MaskPredictor)."""
from __future__ import annotations

import base64
import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from imgcls.data import Preprocessing
from imgcls.data.decode import decoded_size, load_image
from imgcls.data.names import safe_name
from imgcls.data.transforms import Resize, resized_size
from imgcls.errors import ConfigError, DataError
from imgcls.inference import Explainer, Predictor, open_source
from imgcls.inference.abstain import parse_abstain
from imgcls.inference.seg_predict import MaskPredictor, palette_png
from imgcls.runtime import resolve_device


class Busy(Exception):
    """Every worker is busy and the queue is full: try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy: retry after {retry_after} s")
        self.retry_after = retry_after


class TooBig(DataError):
    """A request whose images would take more pixels to decode and resize than its budget (HTTP 413)."""


class BoundedPool:
    """`workers` threads and at most `queue` jobs waiting for one; a place beyond that raises Busy at once
    instead of letting the backlog (and the uploads it holds) grow without bound. A request takes its
    place (`hold`) before its body is read, so a busy server reads and stores nothing of it."""

    def __init__(self, workers: int = 1, queue: int = 8) -> None:
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="imgcls-infer")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._seconds = 1.0  # running mean of a job's duration, for Retry-After

    def hold(self) -> Place:
        """One of the workers + queue places, taken now; Busy (with a Retry-After) when none is free."""
        if not self._slots.acquire(blocking=False):
            waves = (self.workers + self.queue) / self.workers  # jobs ahead, in rounds of the pool
            raise Busy(max(1, math.ceil(self._seconds * waves)))
        return Place(self)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """`fn(*args, **kwargs)` on a place taken now (Busy when none is free)."""
        return self.hold().run(fn, *args, **kwargs)

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        def timed() -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

        return self._executor.submit(timed)

    def shutdown(self) -> None:
        """Drop the jobs still waiting, finish the running ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class Place:
    """A place in a BoundedPool, from `BoundedPool.hold`: `run` runs one job on it, and the place is free
    again when that job ends; a place that runs nothing is freed at the end of its `with` block."""

    def __init__(self, pool: BoundedPool) -> None:
        self._pool, self._used, self._freed = pool, False, False

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        assert not self._used, "a place runs one job"
        self._used = True
        try:
            future = self._pool._run(fn, *args, **kwargs)
        except BaseException:
            self._free()
            raise
        future.add_done_callback(lambda _: self._free())
        return future

    def _free(self) -> None:
        if not self._freed:
            self._freed = True
            self._pool._slots.release()

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._used:
            self._free()


def png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def reason_of(error: Exception) -> str:
    """A DataError's what-happened part, without the CLI's advice after "; " (--skip-bad, delete it)."""
    return str(error).split("; ", 1)[0]


class ModelService:
    """A Predictor as the web app uses it: uploads in, `imgcls predict --json` entries out (with the
    Grad-CAM overlay on request), and the model card. A Predictor without a PyTorch model (an exported
    ONNX file) predicts the same and simply has no Grad-CAM; the card says why."""

    def __init__(self, predictor: Predictor, *, source: str, info: dict[str, Any] | None = None) -> None:
        self.predictor, self.source, self.info = predictor, source, dict(info or {})
        self.explainer: Explainer | None = None
        self.cam_reason: str | None = None
        try:
            self.explainer = Explainer(predictor)
        except ConfigError as e:
            self.cam_reason = str(e)

    @property
    def resize(self) -> int:
        return self.predictor.preprocessing.resize

    def decode(self, name: str, data: bytes | IO[bytes]) -> Image.Image:
        """The uploaded bytes (or spooled file) as an RGB image, a JPEG above REDUCE_ABOVE_PIXELS decoded
        reduced; DataError (not an image, truncated, a decompression bomb). `name` is the client's file
        name, used in messages only: no file is ever opened by it."""
        return load_image(Path(name), data=data, resize=self.resize)

    def check_pixels(self, uploads: Sequence[tuple[str, bytes | IO[bytes]]], max_pixels: int) -> None:
        """TooBig when the uploads would take more than `max_pixels` to decode and resize, all together (an
        image counts at its decoded size or at its size after the model's resize, whichever is larger);
        read from their headers, before any is decoded."""
        total = 0
        for name, data in uploads:
            w, h = decoded_size(Path(name), data=data, resize=self.resize)
            rw, rh = resized_size(w, h, self.resize)
            total += max(w * h, rw * rh)
            if total > max_pixels:
                resized = f", {rw}x{rh} once resized," if rw * rh > w * h else ""
                raise TooBig(f"{name}: decodes to {w}x{h} px{resized} which brings the request to {total / 1e6:.1f} "
                             f"megapixels, above the limit of {max_pixels / 1e6:g} a request (--max-megapixels); "
                             "send fewer or smaller images")

    def predict(self, uploads: Sequence[tuple[str, bytes | IO[bytes]]], *, topk: int = 5, cam: bool = False,
                max_pixels: int | None = None) -> list[dict[str, Any]]:
        """One `Prediction.to_dict()` per upload (bytes or an open file), in order; with `cam`, each also
        gets "cam": the overlay as a PNG data URL, its layer and class (None when this model has no
        Grad-CAM). `max_pixels`: see `check_pixels`, checked before any work. Uploads are decoded one at a
        time and each is kept at the model's resize only (the Predictor's transform starts with that resize)."""
        if max_pixels is not None:
            self.check_pixels(uploads, max_pixels)
        if not cam or self.explainer is None:
            pre = self.predictor.preprocessing
            resize = Resize(pre.resize, pre.interpolation)
            preds = self.predictor.predict([resize(self.decode(name, data)) for name, data in uploads], topk=topk)
            out = []
            for pred, (name, _) in zip(preds, uploads):
                pred.source = name
                out.append(pred.to_dict() | ({"cam": None} if cam else {}))
            return out
        out = []
        for name, data in uploads:
            result = self.explainer.explain(self.decode(name, data), name, topk=topk)
            out.append(result.prediction.to_dict() | {"cam": {
                "png": png_data_url(result.overlay(lines=[])), "layer": result.layer, "class": result.target,
                "shows": "the centre crop the model saw"}})
        return out

    def card(self) -> dict[str, Any]:
        """Architecture, classes, validation top-1 (from the checkpoint), preprocessing, parameters, Grad-CAM;
        a multi-label model's task and per-class thresholds."""
        model = self.predictor.model
        params = sum(p.numel() for p in model.parameters()) if model is not None else self.info.get("parameters")
        return {"source": self.source, "backend": "pytorch" if model is not None else self.info.get("backend", "onnx"),
                "architecture": self.info.get("architecture", type(model).__name__ if model is not None else None),
                "classes": list(self.predictor.classes), "num_classes": len(self.predictor.classes),
                "val_top1": self.info.get("val_top1"), "val_epoch": self.info.get("val_epoch"),
                "preprocessing": _rounded(self.predictor.preprocessing), "parameters": params,
                "device": str(getattr(self.predictor, "device", "cpu")),
                "temperature": getattr(self.predictor, "temperature", 1.0),
                "abstain": getattr(self.predictor, "abstain", None),
                "task": "multilabel" if getattr(self.predictor, "multilabel", False) else "classification",
                "thresholds": getattr(self.predictor, "thresholds", None),
                "cam": {"available": self.explainer is not None,
                        "layer": self.explainer.layer if self.explainer else None, "reason": self.cam_reason}}


NO_CAM = "a segmentation model: the page lays its mask over the photo instead"


class MaskService(ModelService):
    """A MaskPredictor behind the web app: uploads in, class shares and palette-PNG masks out."""

    task = "segmentation"

    def __init__(self, predictor: MaskPredictor, *, source: str, info: dict[str, Any] | None = None) -> None:
        self.predictor, self.source, self.info = predictor, source, dict(info or {})
        self.explainer, self.cam_reason = None, NO_CAM

    @property
    def resize(self) -> int:
        return self.predictor.pre.resize

    def predict(self, uploads: Sequence[tuple[str, bytes | IO[bytes]]], *, topk: int = 5, cam: bool = False,
                max_pixels: int | None = None) -> list[dict[str, Any]]:
        """Per upload, in order: {"path", "error", "task", "size": [w, h], "shares": [{"label", "index",
        "share"}, ...] (largest first, classes present only), "mask": PNG data URL}; "cam": None when asked
        for (no Grad-CAM for masks). `topk` does not apply: every class present is listed."""
        if max_pixels is not None:
            self.check_pixels(uploads, max_pixels)
        classes, palette = self.predictor.classes, self.predictor.palette
        out = []
        for name, data in uploads:
            photo = np.asarray(self.decode(name, data))
            mask = self.predictor.mask_of(photo)
            counts = np.bincount(mask.ravel(), minlength=len(classes))
            order = np.argsort(-counts, kind="stable")
            shares = [{"label": safe_name(classes[i]), "index": int(i), "share": round(float(counts[i] / mask.size), 6)}
                      for i in order if counts[i]]
            out.append({"path": safe_name(name), "error": None, "task": self.task, "size": [mask.shape[1], mask.shape[0]],
                        "shares": shares, "mask": png_data_url(palette_png(mask, palette))}
                       | ({"cam": None} if cam else {}))
        return out

    def card(self) -> dict[str, Any]:
        """The model card: a classifier's fields (val_top1 holds the best val mean IoU) plus the task, the
        palette and the void index."""
        model = self.predictor.source.network
        params = sum(p.numel() for p in model.parameters()) if model is not None else self.info.get("parameters")
        labels = self.predictor.source.labels
        return {"task": self.task, "source": self.source, "backend": self.predictor.backend,
                "architecture": self.info.get("architecture"), "classes": list(self.predictor.classes),
                "num_classes": len(self.predictor.classes), "palette": [list(c) for c in self.predictor.palette],
                "void": labels.get("void"), "val_top1": None, "val_miou": self.info.get("val_top1"),
                "val_epoch": self.info.get("val_epoch"), "preprocessing": _rounded(self.predictor.pre),
                "parameters": params, "device": str(self.predictor.device), "temperature": 1.0, "abstain": None,
                "cam": {"available": False, "layer": None, "reason": NO_CAM}}


def _rounded(preprocessing: Preprocessing) -> dict[str, Any]:
    """The preprocessing as people read it: mean and std to 3 decimals (0.498, not 0.4980392156862745)."""
    return {k: [round(float(x), 3) for x in v] if k in ("mean", "std") else v
            for k, v in preprocessing.to_dict().items()}


def open_model(model: str | Path, *, device: str = "auto", abstain: str | float | None = None) -> ModelService:
    """The service for MODEL: a checkpoint file (its card shows the architecture and the best validation
    top-1 it records), a registry weights name or an exported .onnx file (an ONNX file's card shows the
    architecture its metadata records, and it has no Grad-CAM); opened once, by inference.open_source. A
    segmentation model (checkpoint or .onnx) gets a MaskService: masks instead of top-k.
    `abstain`: predict's --abstain (answers below it are "unknown"; a bad value is refused before opening)."""
    parse_abstain(abstain)
    torch_device = resolve_device(device)
    source = open_source(model, device=torch_device)
    info: dict[str, Any] = {"architecture": source.arch["model"] if source.arch else None}
    if source.kind == "checkpoint":
        top1 = source.best.get("top1")
        info |= {"val_top1": top1 if top1 is not None and top1 >= 0 else None, "val_epoch": source.best.get("epoch")}
    if source.task == "segmentation":
        if abstain is not None:
            raise ConfigError(f"--abstain applies to classifiers; {model} is a segmentation model: drop it")
        return MaskService(MaskPredictor(source, device=torch_device), source=Path(model).name or str(model), info=info)
    return ModelService(Predictor.load(source, device=torch_device, abstain=abstain), source=Path(model).name or str(model),
                        info=info)
