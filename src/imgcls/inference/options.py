"""The options of `imgcls eval` and `imgcls predict`, as fields: the CLI builds their flags from these
exactly as `imgcls train`'s come from engine.config, so a shared option (`--draft`, `--device`,
`--workers`) is defined once, in imgcls.options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgcls.options import (device_option, draft_option, images_option, label_col_option, label_sep_option, option,
                            path_col_option, threads_option, workers_option)


def tta_option() -> Any:
    return option(None, "test-time augmentation, probabilities averaged: flip (the centre crop and its mirror), "
                        "crops (torchvision's FiveCrop: 4 corners + centre), flip,crops (TenCrop)",
                  metavar="flip|crops|flip,crops")


def abstain_option(what: str) -> Any:
    return option(None, f"answer \"unknown\" when the top probability is below P (0..1), or precision:Q: {what}",
                  metavar="P|precision:Q")


@dataclass
class EvalOptions:
    part: str | None = option(None, "which part of a split folder, split.json or a CSV's split column",
                              choices=("train", "val", "test"))
    images: str | None = images_option()
    path_col: str | None = path_col_option()
    label_col: str | None = label_col_option()
    label_sep: str | None = label_sep_option()
    batch_size: int = option(64, "images per forward pass", ge=1)
    workers: int | None = workers_option()
    device: str = device_option()
    out_dir: str | None = option(None, "report folder (default: beside the checkpoint, eval-<data name>)",
                                 flag="--output", short="-o")
    n_wrong: int = option(10, "how many confidently wrong images to list (a segmentation model: how many of "
                                   "its worst images worst.png shows)", ge=0, flag="--wrong")
    draft: bool = draft_option()
    skip_bad: bool = option(False, "leave unreadable images out (the report names them) instead of stopping "
                                   "before any work")
    abstain: str | None = abstain_option("the threshold stored at train end for val precision Q, else the one "
                                         "reaching Q on this data; reports coverage and accuracy on the answered part")
    tta: str | None = tta_option()
    cam: int = option(0, "add the Grad-CAM overlays of the K most confidently wrong images to the report, as one "
                         "grid (wrong_cam.png)", ge=0, metavar="K")
    threads: int | None = threads_option()


@dataclass
class PredictOptions:
    topk: int = option(3, "how many classes to show per image, best first (at most the number of classes; a "
                          "multi-label model shows every label above its threshold)", ge=1)
    batch_size: int = option(32, "images per forward pass", ge=1)
    device: str = device_option()
    draft: bool = draft_option()
    skip_bad: bool = option(False, "leave unreadable files out of the output (a count on stderr, exit 0) instead "
                                   "of an error line each and exit 1")
    threads: int | None = threads_option()
    abstain: str | None = abstain_option("the threshold at which the val part's answers were Q precise (stored "
                                         "by train for 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)")
    tta: str | None = tta_option()
    json: bool = option(False, "one JSON list: path, error, answer (the top label or unknown), top (label, index, "
                               "prob); multi-label: answer (the labels above their thresholds), labels (label, index, "
                               "prob, threshold)", cli="switch",
                       exclusive="output")
    csv: bool = option(False, "CSV rows: path, rank, label, prob, error, answer", cli="switch", exclusive="output")
    out_dir: str | None = option(None, "segmentation checkpoints: folder for each photo's mask (STEM.png, palette) "
                                 "and overlay (STEM_overlay.jpg) (default: beside the checkpoint, masks/)",
                                 flag="--output", short="-o")


@dataclass
class CamOptions:
    out_dir: str | None = option(None, "folder for the overlays (default: beside the checkpoint, cam/)",
                                 flag="--output", short="-o")
    layer: str | None = option(None, "module whose feature map is explained, any name of model.named_modules() "
                                     "(default: the model's last feature stage; ViT: the last block's ln_1)")
    target: str | None = option(None, "explain this class instead of the predicted one (multi-label: instead of "
                                "each label above its threshold)", flag="--class", metavar="LABEL")
    topk: int = option(3, "how many classes to print per image", ge=1)
    save_npy: bool = option(False, "also save the raw map (the layer's resolution, not normalised) as .npy")
    force: bool = option(False, "replace the overlays (<image>.cam.png, .cam.npy) that an earlier run left in the "
                                "folder (default: refuse, naming the file)")
    device: str = device_option()
