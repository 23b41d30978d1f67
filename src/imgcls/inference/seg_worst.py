"""The images a segmentation model does worst on, for `imgcls eval`'s worst.png: each photo's own mean IoU
(over the classes in its truth or its prediction, void ignored) and pixel accuracy, the `k` lowest kept
with their masks while the evaluation streams (k masks at about the sheet's size, never the whole set), then one
sheet with a row per image: photo | truth | prediction, captioned with the file name and its scores."""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgcls.data import load_array, safe_name
from imgcls.inference.cam import caption, grid, save_png
from imgcls.reports.seg_metrics import pixel_confusion, seg_metrics

TILE = 320  # width of each picture in the sheet


@dataclass(order=True)
class Scored:
    miou: float
    pixel_acc: float
    index: int  # the photo's position in the evaluated part: ties keep the earlier
    photo: Path = field(compare=False)
    truth: np.ndarray = field(compare=False, repr=False)  # HxW uint8 class indices, IGNORE where void
    pred: np.ndarray = field(compare=False, repr=False)


class WorstImages:
    """The `k` images with the lowest mean IoU (then pixel accuracy) of those `add`ed."""

    def __init__(self, k: int, num_classes: int) -> None:
        self.k, self.n = k, num_classes
        self._heap: list[tuple[float, float, int, Scored]] = []  # max-heap by negated scores: the best of the worst on top

    def add(self, index: int, photo: Path, pred: torch.Tensor, truth: torch.Tensor) -> None:
        """One photo's prediction and truth (HxW class indices at the photo's size; IGNORE = void)."""
        if self.k <= 0:
            return
        m = seg_metrics(pixel_confusion(pred, truth, self.n))
        if m.pixels == 0:  # all void: nothing to score
            return
        key = (-m.miou, -m.pixel_acc, -index)
        if len(self._heap) == self.k and key <= self._heap[0][:3]:
            return
        step = max(1, -(-truth.shape[-1] // TILE))  # kept at about the sheet's size (nearest), not a big photo's
        item = Scored(m.miou, m.pixel_acc, index, photo, truth[::step, ::step].to(torch.uint8).numpy(),
                      pred[::step, ::step].to(torch.uint8).numpy())
        entry = (*key, item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def worst(self) -> list[Scored]:
        """The kept images, worst first."""
        return sorted(entry[3] for entry in self._heap)


def colour(mask: np.ndarray, palette: Sequence[Sequence[int]], void: int) -> Image.Image:
    """A class-index mask in the palette's colours; IGNORE (void) in void's colour (black if it has none)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
    table[255] = table[void] if void < len(palette) else 0
    return Image.fromarray(table[mask])


def worst_grid(items: Sequence[Scored], classes: Sequence[str], palette: Sequence[Sequence[int]], void: int,
               path: Path, *, tile: int = TILE) -> Path:
    """worst.png: a row per image (photo, truth, prediction), each picture `tile` px wide."""
    tiles = []
    for rank, s in enumerate(items, start=1):
        h, w = s.truth.shape
        size = (tile, max(1, round(h * tile / w)))
        try:
            photo = Image.fromarray(load_array(s.photo, resize=tile)).resize(size, Image.BILINEAR)
        except Exception:  # noqa: BLE001 - it was read a moment ago; a grey tile rather than no sheet
            photo = Image.new("RGB", size, (200, 200, 200))
        truth = colour(s.truth, palette, void).resize(size, Image.NEAREST)
        pred = colour(s.pred, palette, void).resize(size, Image.NEAREST)
        present = np.unique(s.truth[s.truth < len(classes)])
        tiles += [caption(photo, [f"#{rank} {safe_name(s.photo.name)}", f"mIoU {s.miou:.1%}, pixel acc {s.pixel_acc:.1%}"]),
                  caption(truth, ["truth", ", ".join(classes[i] for i in present[:6])]),
                  caption(pred, ["prediction", ""])]
    return save_png(grid(tiles, columns=3), path)
