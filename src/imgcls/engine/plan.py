"""Plan, then run: `plan(config)` resolves everything a run needs once, before the run folder exists.

In one pass, in this order: the resume reconciliation (what the checkpoint fixes, what the flags may
change), the weights' preprocessing and model, validation of every value, the device, precision and
process group, the transfer policy, the datasets (bad files listed first), the cache of
--feature-views within memory, the loader workers, the network with its pretrained weights and memory
layout, and for last: the frozen prefix whose maps are cached (checked on a random batch). Everything
that can be refused is refused here, so a refused run leaves nothing behind; nothing is written. The
returned `Plan.config` is a new, fully resolved config (the caller's is not touched): exactly what the
run saves as config.json.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.balance import class_counts, class_weights, weights_line
from imgcls.data.loader import train_workers
from imgcls.engine import budget, build, distributed, resume
from imgcls.engine.checkpoint import check_arch, load_checkpoint
from imgcls.engine.config import Config
from imgcls.engine.distributed import Dist
from imgcls.engine.features import check_backend
from imgcls.engine.transfer import FrozenSplit, TransferPolicy, split_network
from imgcls.errors import ConfigError
from imgcls.models.frozen_bn import fold_batchnorm
from imgcls.tasks import Task, task_class

log = logging.getLogger("imgcls")


@dataclass(frozen=True)
class Resume:
    """A --resume: the checkpoint's contents and what the flags changed."""

    path: Path
    state: dict[str, Any]
    changes: dict[str, tuple[Any, Any]]
    new_folder: bool  # --name/--out-dir given: continue in a new run folder
    sums_scale: float = 1.0  # another number of processes: the epoch's running sums rescaled to the new batch


@dataclass(frozen=True)
class Plan:
    config: Config  # resolved; what config.json holds
    task: Task
    dist: Dist
    amp_dtype: torch.dtype | None
    policy: TransferPolicy
    data: build.Datasets
    data_files: dict[str, Any]
    workers: int
    model: nn.Module  # built, pretrained weights loaded, policy applied, on the device
    arch: dict[str, Any]
    notes: tuple[str, ...] = ()  # what was resolved for the user, logged once the run's log exists
    resume: Resume | None = None
    split: FrozenSplit | None = None  # last: on cached maps: the frozen prefix run once per image and view
    class_weights: tuple[float, ...] | None = None  # --class-weights: the criterion's, from the train counts

    @property
    def device(self) -> torch.device:
        return self.dist.device


def plan(config: Config, *, given: set[str] | None = None) -> Plan:
    """Resolve `config` into a Plan. `given` names the settings the caller set explicitly (the CLI's
    flags); it matters for --resume (engine.resume) and for what registered weights may fill in. By
    default it is every setting that differs from its default."""
    given = config.changed_fields() if given is None else set(given)
    cfg, res, notes = _resolved_config(copy.deepcopy(config), given)
    t = cfg.train
    torch.manual_seed(t.seed)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    # under torchrun: this rank's device (cuda:LOCAL_RANK, or the CPU with its share of the cores)
    dist = distributed.init(t.device, timeout_s=t.dist_timeout)
    t.progress = t.progress and dist.is_main  # progress bars on rank 0 only
    if res is not None:
        res = _resume_world(cfg, res, dist)
    amp_dtype = build.resolve_amp(t.amp, dist.device)
    policy = TransferPolicy.parse(cfg.model.transfer)
    kind = task_class(_task_of_data(cfg))
    dense = kind.name == "segmentation"
    if dense and res is None:
        _resolve_dense(cfg, given, notes)
    caching = (policy.caches_features or policy.mode == "last") and cfg.data.feature_views != 0
    if caching:
        check_backend(cfg.data.feature_backend, dist.device)
    data = build.build_datasets(cfg.data, *kind.transforms(cfg.data, train_crop=build.train_crop(cfg.data),
                                                           preprocessing=build.preprocessing(cfg.data, dense=dense)))
    task = _task(kind, cfg, data, notes)
    weights = _class_weights(cfg, data, notes) if kind.name == "classification" else None
    data_files = resume.data_files(data.train.samples, data.val.samples)
    if caching:
        _check_cache(cfg, policy, data, dist, notes)
    workers = (max(1, train_workers(dist.device) // dist.local_world) if cfg.data.workers is None
               else cfg.data.workers)
    distributed.check_batches(dist, train_images=len(data.train), val_images=len(data.val),
                              batch_size=cfg.data.batch_size)
    distributed.check_sync_bn(t.sync_bn, dist)
    if res is not None:
        resume.check_data(res.state, data.classes, data_files, res.path)
        check_arch(res.state, res.path, model=cfg.model.model, num_classes=len(data.classes))
        resume.check_threads(res.state, res.path)
    model, base_classes, loaded, folded = _network(cfg, policy, dist, res, len(data.classes))
    split = _frozen_split(cfg, policy, model, dist.device, notes)
    arch = build.arch_of(cfg, policy, len(data.classes), base_classes)
    notes.append(speed_line(cfg, dist.device, workers, folded))
    return Plan(cfg, task, dist, amp_dtype, policy, data, data_files, workers, model, arch,
                notes=loaded + tuple(notes), resume=res, split=split, class_weights=weights)


def _class_weights(cfg: Config, data: build.Datasets, notes: list[str]) -> tuple[float, ...] | None:
    """--class-weights from the train part's counts (data.balance), with their one log line."""
    o = cfg.optim
    counts = class_counts([t for _, t in data.train.samples], len(data.classes))
    weights = class_weights(counts, o.class_weights, beta=o.class_weights_beta)
    if weights is None:
        return None
    how = "balanced (1/n)" if o.class_weights == "balanced" else \
        f"effective (Cui et al. 2019, beta {o.class_weights_beta:g}: (1-beta)/(1-beta^n))"
    notes.append(weights_line(data.classes, counts, weights, how))
    return tuple(weights)


def _resolved_config(cfg: Config, given: set[str]) -> tuple[Config, Resume | None, list[str]]:
    """The run's config: the checkpoint's with the allowed changes on --resume, else the given one with
    the registered weights' preprocessing filled in; validated, data paths absolute."""
    if cfg.train.resume:
        path = Path(cfg.train.resume)
        state = load_checkpoint(path)
        saved = Config.from_dict(state["config"], source=str(path))
        if "bn_fold" not in state["config"].get("model", {}):
            saved.model.bn_fold = "none"  # a run of an imgcls that did not fold resumes as it ran
        cfg, changes = resume.resumed_config(saved, cfg, given, path)
        resume.check_epochs(cfg, state["epoch"], state["epoch_step"])
        res = Resume(path, state, changes, new_folder=bool(changes.keys() & {"name", "out_dir"}))
        return cfg, res, []
    taken = build.take_weight_preprocessing(cfg, given)
    cfg.validate()
    for key in ("data", "val_data", "images"):  # absolute, so a resume from another directory finds it
        if cfg.get(key):
            cfg.set(key, str(Path(cfg.get(key)).resolve()))
    if cfg.train.name:
        check_run_name(Path(cfg.train.out_dir) / cfg.train.name)
    notes = [f"preprocessing of {cfg.model.weights}: {', '.join(taken)}"] if taken else []
    return cfg, None, notes


def _fold_batchnorm(cfg: Config, model: nn.Module, device: torch.device) -> int:
    """--bn-fold resolved into the config (auto: all for a full fine-tune of pretrained weights on a CPU,
    where BatchNorm's passes are a fifth of a depthwise net's step; else frozen) and applied to the
    model; how many BatchNorm layers were folded."""
    m = cfg.model
    if m.bn_fold == "auto":
        full = TransferPolicy.parse(m.transfer).mode == "full"
        m.bn_fold = "all" if full and m.weights and device.type == "cpu" and not cfg.train.sync_bn else "frozen"
    if m.bn_fold == "none":
        return 0
    frozen = None if m.bn_fold == "all" else (lambda bn: not any(p.requires_grad for p in bn.parameters()))
    return fold_batchnorm(model, keep=frozen)


def speed_line(cfg: Config, device: torch.device, workers: int, folded: int) -> str:
    """The one log line that says which speed settings the run chose and the flag that changes each."""
    m = cfg.model
    bn = {"all": f"BatchNorm statistics frozen at the pretrained values and folded into {folded} convolutions "
                 "(--bn-fold none trains on batch statistics)",
          "frozen": f"the frozen part's BatchNorm folded into {folded} convolutions (--bn-fold none)",
          "none": "BatchNorm not folded (--bn-fold)"}[m.bn_fold if folded or m.bn_fold == "none" else "none"]
    return (f"speed settings on {device.type} ({torch.get_num_threads()} threads for the step, {workers} loader "
            f"worker(s), --workers): {'channels_last' if m.channels_last else 'NCHW'} (--{'no-' * bool(m.channels_last)}"
            f"channels-last), {bn}, {'torch.compile' if m.compile else 'eager'} (--{'no-' * m.compile}compile)")


def _task_of_data(cfg: Config) -> str:
    """The data's task (its layout: build.data_task), which must be the model's."""
    from imgcls.models.registry import task_of

    data, model = build.data_task(cfg.data), task_of(cfg.model.model)
    if data != model and not (data == "multilabel" and model == "classification"):  # a classifier, sigmoid outputs
        what = ("photos with masks (segmentation)" if data == "segmentation" else
                "a class-per-folder set (classification)")
        pick = ("a segmentation model, e.g. --model lraspp_efficientnet_lite0 --weights efficientnet_lite0.in1k"
                if data == "segmentation" else "a classifier (imgcls models)")
        raise ConfigError(f"{cfg.data.data}: {what}, but {cfg.model.model} is a {model} model; pick {pick}")
    return data


def _resolve_dense(cfg: Config, given: set[str], notes: list[str]) -> None:
    """Segmentation's defaults where not given: the eval size of the data's own photos, the aux loss at 0.5
    (torchvision's recipe), the poly schedule; no cached maps (config.check_dense refused the rest)."""
    resolved = []
    if "resize_size" not in given:
        cfg.data.resize_size = build.data_resize(cfg.data)
        resolved.append(f"resize_size={cfg.data.resize_size} (the val photos' shorter side)")
    if "aux_weight" not in given:
        cfg.train.aux_weight = 0.5
        resolved.append("aux_weight=0.5")
    if "schedule" not in given:
        cfg.optim.schedule = "poly"
        resolved.append("schedule=poly")
    cfg.data.feature_views = 0
    notes.append(f"segmentation: {', '.join(resolved)}" if resolved else "segmentation")


def _task(kind: type, cfg: Config, data: build.Datasets, notes: list[str]) -> Task:
    if kind.name == "multilabel":
        from imgcls.engine.multilabel import multilabel_task

        return multilabel_task(cfg, data, notes)
    if cfg.train.metric == "map" or cfg.optim.pos_weight != "none":
        flag = "--metric map" if cfg.train.metric == "map" else f"--pos-weight {cfg.optim.pos_weight}"
        raise ConfigError(f"{flag} applies to multi-label data (a CSV read with --label-sep); drop it")
    if kind.name != "segmentation":
        if cfg.optim.class_weights == "median-frequency":
            raise ConfigError("--class-weights median-frequency weighs the pixels of segmentation masks; for "
                              "classes of photos use --class-weights balanced or effective")
        return kind(data.classes, metric=cfg.train.metric)
    from imgcls.tasks.segmentation import median_frequency_weights

    if cfg.optim.class_weights in ("balanced", "effective"):
        raise ConfigError(f"--class-weights {cfg.optim.class_weights} weighs classes of photos; for segmentation "
                          "masks use --class-weights median-frequency")
    weights = None
    if cfg.optim.class_weights == "median-frequency":
        weights = median_frequency_weights(data.pixel_counts, len(data.classes))
        notes.append("class weights (median frequency): " + ", ".join(
            f"{c} {w:.2f}" for c, w in zip(data.classes, weights.tolist())))
    return kind(data.classes, labels=data.labels, class_weights=weights)


def _check_cache(cfg: Config, policy: TransferPolicy, data: build.Datasets, dist: Dist, notes: list[str]) -> None:
    """The cache of --feature-views within memory. For last: with --feature-views unset, an image-only
    recipe or a cache too big for memory makes the run train on images (a note says why) instead."""
    auto = policy.mode == "last" and cfg.data.feature_views is None
    try:
        if auto and cfg.data.image_recipes():
            raise ConfigError(f"{cfg.data.image_recipes()[0]} works on images")
        budget.check_feature_cache(cfg, len(data.train), len(data.val), processes=dist.local_world)
    except ConfigError as e:
        if not auto:
            raise
        cfg.data.feature_views = 0
        notes.append(f"--transfer {policy}: training on images, the frozen part runs every step (not on cached "
                     f"maps: {e})")


def _frozen_split(cfg: Config, policy: TransferPolicy, model: nn.Module, device: torch.device, notes: list[str]
                  ) -> FrozenSplit | None:
    """last:'s frozen prefix, found and checked on a random batch (engine.transfer.split_network), when the
    run caches its maps; resolves --feature-views into the config (unset: 1 where the maps can stand in
    for the images, else 0 with a note; given: a network they cannot stand in for is refused)."""
    views = cfg.data.feature_views
    if policy.mode != "last" or views == 0:
        if policy.caches_features and views is None:
            cfg.data.feature_views = 1
        return None
    size = cfg.data.input_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    found = split_network(model, policy, x.contiguous(memory_format=torch.channels_last) if cfg.model.channels_last
                          else x)
    if isinstance(found, FrozenSplit):
        cfg.data.feature_views = 1 if views is None else views
        return found
    if views is not None:
        raise ConfigError(f"--feature-views {views}: --transfer {policy} cannot train on cached maps of its frozen "
                          f"part: {found}; use --feature-views 0 (the frozen part then runs every step)")
    cfg.data.feature_views = 0
    notes.append(f"--transfer {policy}: training on images, the frozen part runs every step (its output maps "
                 f"cannot stand in for the images: {found})")
    return None


def _backbone_weights(cfg: Config, state: dict[str, Any]) -> bool:
    """Whether weights for a segmentation model are its backbone's: a classifier's file (no `backbone.` key;
    torchvision's segmentation files have them) loads into `model.backbone`."""
    from imgcls.models.registry import task_of

    return task_of(cfg.model.model) == "segmentation" and not any(k.startswith("backbone.") for k in state)


def check_run_name(run: Path) -> None:
    """A named run folder is never overwritten: refused before any work (engine.fit makes the folder)."""
    if run.exists() and any(run.iterdir()):
        raise ConfigError(f"{run}: run folder exists and is not empty; pick another --name, or --resume {run}/last.ckpt")


def _resume_world(cfg: Config, res: Resume, dist: Dist) -> Resume:
    """A checkpoint of a run with another number of processes: the same global batch, split anew."""
    saved_world = res.state.get("world_size", 1)
    if saved_world == dist.world:
        return res
    old = cfg.data.batch_size
    new = distributed.resume_batch_size(old, saved_world, dist, str(res.path))
    cfg.data.batch_size = new
    changes = {**res.changes, "batch_size": (f"{old} per rank x {saved_world}", f"{new} per rank x {dist.world}")}
    return Resume(res.path, res.state, changes, res.new_folder, sums_scale=new / old)


def _network(cfg: Config, policy: TransferPolicy, dist: Dist, res: Resume | None, n: int
             ) -> tuple[nn.Module, int | None, tuple[str, ...], int]:
    """(the network on its device, the pretrained head's width under head+, the load report's lines, how
    many BatchNorm layers --bn-fold folded).

    Built with the pretrained weights by weights.build_pretrained, the one path for that: at the run's
    class count (a head of another size is left at its fresh initialisation and the report says so;
    head+ keeps the file's classifier and stacks its new head on it); a --resume loads the checkpoint's
    weights (the cached features and maps are made from them, before TrainState.start) and the policy
    freezes what does not train. The memory layout is resolved into the config once."""
    from imgcls.weights import build_pretrained, read_state_dict, resolve_weights

    state, source = None, None
    if cfg.model.weights and res is None:

        source = dist.run_on_main(resolve_weights, cfg.model.weights)  # one download, not one per rank
        if not dist.is_main:
            source = resolve_weights(cfg.model.weights)  # its own copy (the cache may not be shared)
        state, _ = read_state_dict(source)
    stacked = policy.mode == "head+"  # keeps the pretrained classifier, the new one on top
    backbone_only = state is not None and _backbone_weights(cfg, state)
    built = build_pretrained({"model": cfg.model.model, "num_classes": n, "model_kwargs": dict(cfg.model.model_kwargs),
                              "head": "stacked" if stacked else "linear",
                              "base_classes": res.state["arch"]["base_classes"] if stacked and res is not None else None},
                             None if backbone_only else state, source=str(source))
    model = built.model
    report = (built.report.to_text(),) if built.report is not None else ()
    if backbone_only:  # a classifier's weights (efficientnet_lite0.in1k) for a segmentation model's backbone
        from imgcls.weights import load_pretrained

        report = (load_pretrained(model.backbone, state, source=str(source)).to_text(),)
    if res is not None:
        model.load_state_dict(res.state["model"])
    policy.apply(model)
    folded = _fold_batchnorm(cfg, model, dist.device)
    if cfg.model.channels_last is None:  # resolved once and saved with the config: a resume keeps it
        cfg.model.channels_last = bool(getattr(model, "channels_last", True))
    if cfg.train.sync_bn and dist.world > 1:
        model = distributed.sync_batchnorm(model)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.to(dist.device), built.base_classes, report, folded
