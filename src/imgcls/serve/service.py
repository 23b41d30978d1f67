"""What the web app runs, without the web framework: the model behind it (`ModelService`: decode an
upload, predict, Grad-CAM, the model card) and the bounded worker pool that runs it (`BoundedPool`)."""
from __future__ import annotations

import base64
import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from imgcls.checkpoint import load_model, source_kind
from imgcls.data.decode import load_image
from imgcls.errors import ConfigError
from imgcls.inference import Explainer, Predictor
from imgcls.weights.specs import spec_arch


class Busy(Exception):
    """Every worker is busy and the queue is full: try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy: retry after {retry_after} s")
        self.retry_after = retry_after


class BoundedPool:
    """`workers` threads and at most `queue` jobs waiting for one; `submit` beyond that raises Busy at
    once instead of letting the backlog (and the uploads it holds in memory) grow without bound."""

    def __init__(self, workers: int = 1, queue: int = 8) -> None:
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="imgcls-infer")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._seconds = 1.0  # running mean of a job's duration, for Retry-After

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        if not self._slots.acquire(blocking=False):
            waves = (self.workers + self.queue) / self.workers  # jobs ahead, in rounds of the pool
            raise Busy(max(1, math.ceil(self._seconds * waves)))

        def run() -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

        try:
            future = self._executor.submit(run)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def shutdown(self) -> None:
        """Drop the jobs still waiting, finish the running ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)


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

    def decode(self, name: str, data: bytes) -> Image.Image:
        """The uploaded bytes as an RGB image; DataError (not an image, truncated, a decompression bomb).
        `name` is the client's file name, used in messages only: no file is ever opened by it."""
        return load_image(Path(name), data=data)

    def predict(self, uploads: Sequence[tuple[str, bytes]], *, topk: int = 5, cam: bool = False) -> list[dict[str, Any]]:
        """One `Prediction.to_dict()` per upload, in order; with `cam`, each also gets "cam": the overlay
        as a PNG data URL, its layer and class (None when this model has no Grad-CAM)."""
        images = [self.decode(name, data) for name, data in uploads]  # refuse the request before any work
        if not cam or self.explainer is None:
            preds = self.predictor.predict(images, topk=topk)
            out = []
            for pred, (name, _) in zip(preds, uploads):
                pred.source = name
                out.append(pred.to_dict() | ({"cam": None} if cam else {}))
            return out
        out = []
        for image, (name, _) in zip(images, uploads):
            result = self.explainer.explain(image, name, topk=topk)
            out.append(result.prediction.to_dict() | {"cam": {
                "png": png_data_url(result.overlay(lines=[])), "layer": result.layer, "class": result.target,
                "shows": "the centre crop the model saw"}})
        return out

    def card(self) -> dict[str, Any]:
        """Architecture, classes, validation top-1 (from the checkpoint), preprocessing, parameters, Grad-CAM."""
        model = self.predictor.model
        params = sum(p.numel() for p in model.parameters()) if model is not None else self.info.get("parameters")
        return {"source": self.source, "backend": "pytorch" if model is not None else self.info.get("backend", "onnx"),
                "architecture": self.info.get("architecture", type(model).__name__ if model is not None else None),
                "classes": list(self.predictor.classes), "num_classes": len(self.predictor.classes),
                "val_top1": self.info.get("val_top1"), "val_epoch": self.info.get("val_epoch"),
                "preprocessing": dict(self.predictor.preprocessing), "parameters": params,
                "device": str(getattr(self.predictor, "device", "cpu")),
                "cam": {"available": self.explainer is not None,
                        "layer": self.explainer.layer if self.explainer else None, "reason": self.cam_reason}}


def open_model(model: str | Path, *, device: str = "auto") -> ModelService:
    """The service for MODEL: a checkpoint file (its card shows the architecture and the best validation
    top-1 it records), a registry weights name or an exported .onnx file (Predictor.load; an ONNX file's
    card shows the architecture its metadata records, and it has no Grad-CAM)."""
    path = Path(model)
    if source_kind(model) == "checkpoint":
        network, state = load_model(path)
        best = state.get("best") or {}
        top1 = best.get("top1")
        info = {"architecture": state["arch"]["model"], "val_top1": top1 if top1 is not None and top1 >= 0 else None,
                "val_epoch": best.get("epoch")}
        return ModelService(Predictor(network, state["classes"], state["preprocessing"], device=device),
                            source=path.name, info=info)
    predictor = Predictor.load(model, device=device)
    meta = getattr(predictor.runner, "metadata", None) or {}
    arch = (meta.get("arch") or {}).get("model") or spec_arch(str(model))  # an .onnx file, else a weights name
    return ModelService(predictor, source=path.name or str(model), info={"architecture": arch})
