"""What `imgcls serve` runs for a segmentation model (a checkpoint or its exported .onnx file): `MaskService`,
the ModelService of masks. POST /predict gives, per upload, the share of its pixels each class covers and
the mask itself as a palette PNG (data URL) at the size the photo was decoded to; the page lays that mask
over the photo. Uploads are decoded and bounded exactly as for a classifier (ModelService.decode and
check_pixels); a mask is predicted one photo at a time (inference.seg_predict.MaskPredictor)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from imgcls.data.names import safe_name
from imgcls.inference.seg_predict import MaskPredictor, palette_png
from imgcls.serve.service import ModelService, _rounded, png_data_url

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
