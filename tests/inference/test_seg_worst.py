"""eval's worst.png: the k photos with the lowest mean IoU of their own are kept while the evaluation streams
(ties by pixel accuracy, then the earlier photo), all-void photos are not scored, and the sheet has a row
of photo | truth | prediction per photo."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data.seg_transforms import IGNORE
from imgcls.inference.seg_worst import WorstImages, colour, worst_grid
from tests.seg_data import PALETTE, VOID, mask_pattern, photo_of


def test_the_k_lowest_mean_ious_are_kept_worst_first():
    truth = torch.tensor([[0, 0, 1, 1], [2, 2, 2, IGNORE]])
    worst = WorstImages(2, 3)
    wrong = truth.clone()
    wrong[truth == 2] = 0  # class 2 taken for 0: IoU 2/5, 1 and 0
    all_wrong = torch.full_like(truth, 1)
    for i, pred in enumerate([truth, wrong, all_wrong, wrong]):
        worst.add(i, f"p{i}.png", pred, truth)
    worst.add(9, "void.png", truth, torch.full_like(truth, IGNORE))  # nothing to score: left out
    kept = worst.worst()
    assert [s.index for s in kept] == [2, 1]  # the earlier of the two equal ones
    assert kept[1].miou == pytest.approx((0.4 + 1 + 0) / 3) and kept[0].pixel_acc == pytest.approx(2 / 7)
    assert WorstImages(0, 3).worst() == []


def test_the_grid_has_a_row_of_photo_truth_prediction_per_image(tmp_path):
    mask = mask_pattern(40, 30, 0)
    Image.fromarray(photo_of(mask)).save(tmp_path / "a.png")
    truth = torch.from_numpy(mask.astype(np.int64))
    truth[truth == VOID] = IGNORE
    worst = WorstImages(3, 3)
    worst.add(0, tmp_path / "a.png", torch.zeros_like(truth), truth)
    out = worst_grid(worst.worst(), ["a", "b", "c"], [list(c) for c in PALETTE], VOID, tmp_path / "worst.png", tile=80)
    sheet = Image.open(out)
    assert sheet.width > 3 * 80 and sheet.height > 60
    coloured = np.asarray(colour(truth.to(torch.uint8).numpy(), PALETTE, VOID))
    assert tuple(coloured[0, 0]) == PALETTE[VOID] and tuple(coloured[-1, -1]) == PALETTE[mask[-1, -1]]
