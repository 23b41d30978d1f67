"""Where a run's batches come from, chosen from the plan: `batches(plan)` returns the network the steps
train with its train and val batches: the whole model on images (`ImageBatches`); with head-only transfer
its head on features the frozen backbone computed once per image (or per augmented view); with last: on
cached maps the tail of the network on the frozen prefix's maps (`FeatureBatches` both, engine.batches).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from imgcls.engine.batches import FeatureBatches, ImageBatches
from imgcls.engine.features import backbone_runner, extract_features
from imgcls.engine.plan import Plan
from imgcls.engine.transfer import Tail
from imgcls.limits import human_bytes

log = logging.getLogger("imgcls")


def batches(p: Plan) -> tuple[nn.Module, Any, Any]:
    """(the network the steps train, train batches, val batches): the whole model on images; with head-only
    transfer its head on features the frozen backbone computed once (per view); with last: on cached maps
    its tail on the maps of the frozen prefix (engine.transfer.FrozenSplit)."""
    cfg, dist, device = p.config, p.dist, p.device
    if p.split is not None:
        return _map_batches(p)
    if not p.policy.caches_features or cfg.data.feature_views == 0:
        return (p.model, ImageBatches(p.data.train, cfg, device, train=True, workers=p.workers, dist=dist),
                ImageBatches(p.data.val, cfg, device, train=False, workers=p.workers, dist=dist))
    tic = time.perf_counter()
    with p.policy.backbone_and_head(p.model) as (backbone, head):
        cache = _cached(p, backbone.eval(), "features", torch.float32)
    tf, vf = cache.train, cache.val
    log.info("cached backbone features: %d train x %d view(s), %d val, %d-wide, in %.1fs (%s)",
             tf.shape[1], tf.shape[0], vf.shape[1], tf.shape[2], time.perf_counter() - tic, cache.backend)
    return (head, FeatureBatches(tf.to(device), cache.train_targets.to(device), batch_size=cfg.data.batch_size,
                                 seed=cfg.train.seed, train=True, device=device, dist=dist,
                                 balanced=cfg.data.sampler == "balanced"),
            FeatureBatches(vf.to(device), cache.val_targets.to(device), batch_size=max(256, cfg.data.batch_size),
                           seed=0, train=False, device=device, dist=dist))


def _map_batches(p: Plan) -> tuple[nn.Module, Any, Any]:
    """last: on cached maps: the frozen prefix once per image and view (as --map-dtype, on the CPU), the
    tail of the network on them, each map flipped with probability --hflip under --map-flip."""
    cfg, dist, device, split = p.config, p.dist, p.device, p.split
    tic = time.perf_counter()
    cache = _cached(p, split.trunk(p.model), "frozen maps", getattr(torch, cfg.data.map_dtype))
    tf, vf = cache.train, cache.val
    size = tf.element_size() * (tf.numel() + vf.numel())
    flip = cfg.data.hflip if cfg.data.map_flip else 0.0
    log.info("cached frozen maps (%s run once per image; --feature-views 0 runs them every step): %d train x %d "
             "view(s) + %d val, %s each, %s (%s) in %.1fs (%s); the tail from %s trains on them%s",
             split.describe(), tf.shape[1], tf.shape[0], vf.shape[1], " x ".join(map(str, tf.shape[2:])),
             human_bytes(size), cfg.data.map_dtype, time.perf_counter() - tic, cache.backend, split.first,
             f", each map flipped with probability {flip:g} (--no-map-flip)" if flip else "")
    layout = dict(device=device, dist=dist, channels_last=bool(cfg.model.channels_last) and tf.dim() == 5)
    return (Tail(p.model, split, p.policy),
            FeatureBatches(tf, cache.train_targets, batch_size=cfg.data.batch_size, seed=cfg.train.seed, train=True,
                           flip=flip, balanced=cfg.data.sampler == "balanced", **layout),
            FeatureBatches(vf, cache.val_targets, batch_size=max(256, cfg.data.batch_size), seed=0, train=False,
                           **layout))


@dataclass
class _Cache:
    train: torch.Tensor  # [views, N, ...]
    train_targets: torch.Tensor
    val: torch.Tensor  # [1, M, ...]
    val_targets: torch.Tensor
    backend: str  # what ran the frozen part


def _cached(p: Plan, frozen: nn.Module, what: str, dtype: torch.dtype) -> _Cache:
    """The frozen part (eval mode) once over every val image and --feature-views times over every train image:
    the centre crop for one view, the train transform's augmented crops for more. Under DDP each rank runs
    its share and every rank gets all of them; the step then trains replicated (DDP over what trains),
    each rank on its shard of every global batch."""
    cfg, views = p.config, p.config.data.feature_views
    train_ds = p.data.train if views > 1 else _with_transform(p.data.train, p.data.val.transform)
    runner = backbone_runner(frozen, cfg, p.device, images=views * len(train_ds) + len(p.data.val))
    run = partial(extract_features, runner, cfg=cfg, device=p.device, workers=p.workers, dist=p.dist, dtype=dtype)
    tf, tt = run(train_ds, views=views, desc=f"caching train {what}")
    vf, vt = run(p.data.val, views=1, desc=f"caching val {what}")
    return _Cache(tf, tt, vf, vt, getattr(runner, "backend", "torch"))


def _with_transform(ds, transform):
    clone = copy.copy(ds)
    clone.transform = transform
    return clone
