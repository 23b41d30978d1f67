"""From a config to the pieces of a run: datasets, preprocessing, arch (device and precision live in
runtime.py and are re-exported here)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcls.data import ImageFolder, Preprocessing, find_bad_images, make_split, open_dataset
from imgcls.data.split import is_split_index
from imgcls.engine.config import Config, DataConfig, parse_progressive
from imgcls.engine.transfer import TransferPolicy
from imgcls.errors import ConfigError, DataError
from imgcls.runtime import resolve_amp, resolve_device

log = logging.getLogger("imgcls")


# -- data -------------------------------------------------------------------------------------

def eval_resize(cfg: DataConfig) -> int:
    return cfg.resize_size or int(round(cfg.input_size / 0.875))


def preprocessing(cfg: DataConfig) -> Preprocessing:
    """The run's eval preprocessing: its eval transform and batch normaliser, and what a checkpoint records
    (`to_dict()`) so predict/export rebuild the exact eval transform."""
    return Preprocessing(eval_resize(cfg), cfg.input_size, tuple(cfg.mean), tuple(cfg.std), cfg.interpolation)


@dataclass
class Datasets:
    train: ImageFolder
    val: ImageFolder
    classes: list[str]
    source: str  # how train/val were found, for the log


def _with(ds: ImageFolder, samples: list, transform, cfg: DataConfig, side: int | None) -> ImageFolder:
    return ImageFolder(ds.root, transform, samples=samples, classes=ds.classes, min_side=side,
                       skip_bad=cfg.skip_bad, cache=cfg.cache, cache_side=cfg.cache_side)


def build_datasets(cfg: DataConfig, train_tf: Any, eval_tf: Any) -> Datasets:
    """Train and val sets from DATA: a split index, a folder with train/ and val/, or one class-per-folder
    tree split on the fly (stratified, `--val-fraction`, `--split-seed`), with the task's transforms.
    Bad files are found first."""
    if not cfg.data:
        raise ConfigError("no training data given: imgcls train DATA --model NAME")
    path = Path(cfg.data)
    if not path.exists():
        raise DataError(f"{path}: no such folder; give a class-per-folder set, a split folder or split.json")
    # JPEG draft decoding (opt-in) may reduce a photo to this shorter side; None decodes at full size
    side = cfg.cache_side if cfg.cache else eval_resize(cfg) if cfg.draft else None
    if is_split_index(path):
        tr, va = open_dataset(path, "train"), open_dataset(path, "val")
        source = f"split index {path}"
    elif (path / "train").is_dir():
        tr = open_dataset(path, "train")
        va = open_dataset(cfg.val_data) if cfg.val_data else open_dataset(path, "val")
        source = f"{path}/train and {cfg.val_data or path / 'val'}"
    elif cfg.val_data:
        tr, va = open_dataset(path), open_dataset(cfg.val_data)
        source = f"{path} and {cfg.val_data}"
    else:
        split = make_split(path, val=cfg.val_fraction, seed=cfg.split_seed)
        if not split.parts["val"]:
            raise DataError(f"{path}: --val-fraction {cfg.val_fraction} leaves no validation images")
        tr = ImageFolder(path, samples=split.parts["train"], classes=split.classes)
        va = ImageFolder(path, samples=split.parts["val"], classes=split.classes)
        source = f"{path}, stratified split val={cfg.val_fraction} seed={cfg.split_seed}"
    if tr.classes != va.classes:
        raise DataError(f"train and val classes differ: {tr.classes} vs {va.classes}; use the same class folders")
    if len(tr.classes) < 2:
        raise DataError(f"{path}: has one class ({tr.classes[0]}); a classifier needs at least 2 classes, each in "
                        "its own sub-folder")
    train_samples, val_samples = _drop_bad(tr.samples, cfg), _drop_bad(va.samples, cfg)
    return Datasets(_with(tr, train_samples, train_tf, cfg, side), _with(va, val_samples, eval_tf, cfg, side),
                    tr.classes, source)


def _drop_bad(samples: list[tuple[Path, int]], cfg: DataConfig) -> list[tuple[Path, int]]:
    bad = find_bad_images([p for p, _ in samples])
    if not bad:
        return samples
    if not cfg.skip_bad:
        listing = "; ".join(f"{p} ({why})" for p, why in bad[:20]) + (f"; ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise DataError(f"{len(bad)} unreadable image(s): {listing} — delete or replace them, or pass --skip-bad")
    log.warning("skipping %d unreadable image(s) (see `imgcls check` for the list)", len(bad))
    dropped = {p for p, _ in bad}
    return [(p, t) for p, t in samples if p not in dropped]


def take_weight_preprocessing(cfg: Config, given: set[str]) -> list[str]:
    """Registered weights carry the eval preprocessing they were measured with (weights/specs.py, the
    one source): a run with `--weights NAME` uses it for every setting the user did not give, so
    `resnet50.tv2_in1k` evaluates at resize 232, not 256; without `--model` the model is the one the
    weights are for, built with the arguments they need (googlenet's transform_input). Returns what
    was taken, for the log."""
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


__all__ = ["Datasets", "arch_of", "build_datasets", "eval_resize", "preprocessing", "resolve_amp",
           "resolve_device", "train_crop"]
