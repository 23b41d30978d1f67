"""From a config to the pieces of a run: datasets, preprocessing, arch (device and precision live in
runtime.py and are re-exported here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcls.data import DatasetParts, Preprocessing, open_parts
from imgcls.data.masks import MaskClasses, mask_layout
from imgcls.engine.config import Config, DataConfig, parse_progressive
from imgcls.engine.transfer import TransferPolicy
from imgcls.errors import ConfigError, DataError
from imgcls.runtime import resolve_amp, resolve_device


# -- data -------------------------------------------------------------------------------------

def preprocessing(cfg: DataConfig, *, dense: bool = False) -> Preprocessing:
    """The run's eval preprocessing: its eval transform and batch normaliser, and what a checkpoint records
    (`to_dict()`) so predict/export rebuild the exact eval transform. `dense` (segmentation) or --whole-photo:
    no crop, the whole photo at its resize."""
    return Preprocessing(cfg.eval_resize(), None if dense or cfg.whole_photo else cfg.input_size, tuple(cfg.mean),
                         tuple(cfg.std), cfg.interpolation)


def data_task(cfg: DataConfig) -> str:
    """The task DATA trains, from its layout: "segmentation" for photos with masks (data.masks), "multilabel"
    for a CSV file of labels read with --label-sep, else "classification"."""
    from imgcls.data.table import is_table

    if cfg.data and cfg.label_sep is not None and is_table(cfg.data):
        return "multilabel"
    return "segmentation" if cfg.data and Path(cfg.data).is_dir() and mask_layout(Path(cfg.data)) else "classification"


@dataclass
class Datasets:
    train: Any  # ImageFolder, or a data.seg_transforms.MaskDataset
    val: Any
    classes: list[str]
    source: str  # how train/val were found, for the log
    labels: MaskClasses | None = None  # segmentation: void and palette
    pixel_counts: Any = None  # segmentation: the train masks' pixels per value


def build_datasets(cfg: DataConfig, train_tf: Any, eval_tf: Any) -> Datasets:
    """Train and val sets from DATA (data.open_parts: a split index, a split folder, or one class-per-folder
    tree split on the fly: stratified, `--val-fraction`, `--split-seed`; `--val-data` the val part), with
    the task's transforms. Bad files are found first (DatasetParts.readable)."""
    if not cfg.data:
        raise ConfigError("no training data given: imgcls train DATA --model NAME")
    parts = open_parts(cfg.data, only=("train", "val"), val_data=cfg.val_data, val_fraction=cfg.val_fraction,
                       split_seed=cfg.split_seed, csv=cfg.csv_columns())
    if parts.labels is not None:
        return _mask_datasets(parts, cfg, train_tf, eval_tf)
    if len(parts.classes) < 2:
        raise DataError(f"{parts.path}: has one class ({parts.classes[0]}); a classifier needs at least 2 classes, "
                        "each in its own sub-folder (or with its own label)")
    parts, _ = parts.readable("train", "val", skip_bad=cfg.skip_bad)
    # JPEG draft decoding (opt-in) may reduce a photo to this shorter side; None decodes at full size
    side = cfg.cache_side if cfg.cache else cfg.eval_resize() if cfg.draft else None
    kw = dict(min_side=side, skip_bad=cfg.skip_bad, cache=cfg.cache, cache_side=cfg.cache_side)
    return Datasets(parts.dataset("train", train_tf, **kw), parts.dataset("val", eval_tf, **kw), parts.classes,
                    parts.description)


def _mask_datasets(parts: DatasetParts, cfg: DataConfig, train_tf: Any, eval_tf: Any) -> Datasets:
    """Segmentation: every photo and mask read first (photos without a mask, unusable masks: one line, or
    left out with --skip-bad), the train masks' pixel counts kept for the class weights."""
    parts, _ = parts.readable("train", "val", skip_bad=cfg.skip_bad)
    for name in ("train", "val"):
        if not parts.parts[name]:
            raise DataError(f"{parts.roots[name]}: no usable photo with a mask in the {name} part")
    return Datasets(parts.dataset("train", train_tf), parts.dataset("val", eval_tf), parts.classes,
                    parts.description, parts.labels, parts.pixel_counts["train"])


def data_resize(cfg: DataConfig) -> int:
    """Segmentation's default eval size: the shorter side of the first val photo (CamVid: 360), so the
    metrics are those of the data's own size."""
    from imgcls.data.decode import read_bytes, stored_size
    from imgcls.data.masks import read_mask_parts

    source = Path(cfg.val_data or cfg.data)
    found = read_mask_parts(source, wanted=None if cfg.val_data else ("val",))
    pairs = next((p for p in found.parts.values() if p), None)
    if not pairs:
        raise DataError(f"{source}: no val photo with a mask to take the eval size from; add a val part or give "
                        "--resize-size")
    photo = pairs[0][0]
    return min(stored_size(photo, read_bytes(photo)))


def take_weight_preprocessing(cfg: Config, given: set[str]) -> list[str]:
    """Registered weights carry the eval preprocessing they were measured with (weights/specs.py, the
    one source): a run with `--weights NAME` uses it for every setting the user did not give, so
    `resnet50.tv2_in1k` evaluates at resize 232, not 256; without `--model` the model is the one the
    weights are for, built with the arguments they need (googlenet's transform_input). Returns what
    was taken, for the log."""
    from imgcls.models.registry import task_of
    from imgcls.weights.specs import spec_arch, spec_model_kwargs, spec_preprocessing

    pre = spec_preprocessing(cfg.model.weights) if cfg.model.weights else None
    if pre is None:
        return []
    d, taken = cfg.data, []
    arch = spec_arch(cfg.model.weights)
    if "model" not in given and arch and arch != cfg.model.model:  # `--weights NAME` names its model
        cfg.model.model = arch
        taken.append(f"model={arch}")
    needed = {k: v for k, v in spec_model_kwargs(cfg.model.weights, cfg.model.model).items()
              if k not in cfg.model.model_kwargs}  # a --model-kw the user gave wins
    if needed:
        cfg.model.model_kwargs = {**needed, **cfg.model.model_kwargs}
        taken += [f"{k}={v}" for k, v in needed.items()]
    if task_of(cfg.model.model) == "segmentation":  # a backbone's weights: their normalisation, not their crop
        given = given | {"input_size", "resize_size", "cache_side"}
    if "input_size" not in given:
        d.input_size = pre.crop
    if "resize_size" not in given:  # the spec's resize/crop ratio at the input size the run uses
        d.resize_size = pre.resize if d.input_size == pre.crop else round(d.input_size * pre.resize / pre.crop)
    for name in ("mean", "std"):
        if name not in given:
            setattr(d, name, list(getattr(pre, name)))
    if "interpolation" not in given:
        d.interpolation = pre.interpolation
    if "cache_side" not in given and d.cache_side < d.resize_size:  # --cache never upsamples what eval resizes
        d.cache_side = d.resize_size
        taken.append(f"cache_side={d.cache_side}")
    for name in ("input_size", "resize_size", "mean", "std", "interpolation"):
        if name not in given:
            taken.append(f"{name}={getattr(d, name)}")
    return taken


# -- model ------------------------------------------------------------------------------------

def train_crop(cfg: DataConfig) -> int:
    """The loader's train crop: under --progressive its END size (engine.recipes.train_sizes resizes)."""
    return parse_progressive(cfg.progressive)[1] if cfg.progressive else cfg.input_size


def arch_of(cfg: Config, policy: TransferPolicy, num_classes: int, base_classes: int | None) -> dict[str, Any]:
    """What a checkpoint records to rebuild the network (imgcls.checkpoint.build_model)."""
    stacked = policy.mode == "head+"
    return {"model": cfg.model.model, "num_classes": num_classes, "model_kwargs": dict(cfg.model.model_kwargs),
            "head": "stacked" if stacked else "linear", "transfer": cfg.model.transfer, "base_classes": base_classes}


__all__ = ["Datasets", "arch_of", "build_datasets", "data_resize", "data_task", "preprocessing", "resolve_amp",
           "resolve_device", "train_crop"]
