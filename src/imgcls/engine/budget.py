"""What a run's sizes ask of the machine, checked before any work (issue 22: bounded by design).

`check_sizes` (called by Config.validate) holds every pixel size of a config to what the model
takes (its smallest side; its only side for a model of fixed input size) and to MAX_SIDE, and one
training step at the largest train size to the memory of the device the run will use: the step is
profiled on the meta device at a small side (analysis.memory) and scaled, so `--input-size 20000`
costs milliseconds to refuse, never the minutes until the kernel kills a swapping process.
`check_feature_cache` does the same for the cache of `--feature-views` (head/head+'s features,
last:'s maps) once the images are counted (engine.plan).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from imgcls.analysis.memory import StepProfile, step_profile
from imgcls.errors import ConfigError
from imgcls.limits import MAX_SIDE, available_memory, check_side, human_bytes

if TYPE_CHECKING:
    from imgcls.engine.config import Config
    from imgcls.engine.transfer import TransferPolicy

PROFILE_SIDE = 64  # px: the side a model without a fixed input size is profiled at


def meta_model(builder: Any, kwargs: dict, policy: TransferPolicy) -> nn.Module | None:
    """The model built on the meta device (no memory, no initialisation cost) in training mode, with
    `policy`'s frozen parts frozen, as the run will train it; None when the builder cannot be called
    that way (a bad model_kwargs is reported when the model is really built)."""
    import torch

    from imgcls.models.heads import stack_head

    try:
        with torch.device("meta"):
            net = builder(num_classes=2, **kwargs)
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    if policy.mode == "head+":
        stack_head(net, 2)
    return policy.set_train_mode(policy.apply(net))


def check_sizes(cfg: Config, net: nn.Module | None, progressive: tuple[int, int] | None) -> None:
    """Every pixel size of `cfg` against the model (`net`, built on the meta device with the run's
    transfer policy applied; None when it cannot be built that way), MAX_SIDE and the run's memory."""
    d, name = cfg.data, cfg.model.model
    if net is not None:
        _check_model_sizes(name, net, d.input_size, d.progressive, progressive)
    _check_step(cfg, net, progressive)
    for what, value in (("--resize-size", d.resize_size), ("--cache-side", d.cache_side)):
        if value is not None:
            _side(what, value)
    resize = d.eval_resize()
    if resize > MAX_SIDE:  # the derived default: a checkpoint must not record a resize no reader takes
        raise ConfigError(f"--input-size {d.input_size}: evaluation resizes to input / 0.875 = {resize} px, above "
                          f"the largest side imgcls takes ({MAX_SIDE} px); give --resize-size between "
                          f"{d.input_size} and {MAX_SIDE}")


def _side(what: str, value: int) -> None:
    try:
        check_side(what, value)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _check_model_sizes(name: str, net: nn.Module, input_size: int, spec: str | None,
                       progressive: tuple[int, int] | None) -> None:
    side = max(net.min_input_size)
    if net.fixed_input_size:
        _side(f"--model-kw: {name}'s input size", side)
        if input_size != side:
            raise ConfigError(f"--input-size {input_size}: {name} takes only {side}x{side} inputs; "
                              f"use --input-size {side}")
        if progressive is not None and progressive != (side, side):
            raise ConfigError(f"--progressive {spec}: {name} takes only {side}x{side} inputs, so its train size "
                              "cannot grow; drop --progressive")
    if input_size < side:
        raise ConfigError(f"--input-size {input_size} is below {name}'s minimum of {side} px; "
                          f"use --input-size {side} or more")
    if progressive is not None and progressive[0] < side:
        raise ConfigError(f"--progressive {spec}: {progressive[0]} px is below {name}'s minimum of {side} px; "
                          f"start at {side} or more")


# -- one training step ------------------------------------------------------------------------

def _check_step(cfg: Config, net: nn.Module | None, progressive: tuple[int, int] | None) -> None:
    """The largest train side within MAX_SIDE and, with the step that size costs, within the memory of
    the run's device. The flag blamed is the one that sets that side."""
    d, m, batch = cfg.data, cfg.model, cfg.data.batch_size
    size = _TrainSize(d.input_size, d.progressive, progressive)
    profile = None if net is None else _profile(m.model, json.dumps(m.model_kwargs, sort_keys=True, default=str),
                                                 m.transfer)
    if profile is None:  # a model the meta device cannot run: the side alone is checked
        if size.side > MAX_SIDE:
            raise ConfigError(f"{size.flag}: {size.side} px is above the largest side imgcls takes ({MAX_SIDE} px); "
                              f"use at most {size.at(MAX_SIDE)}")
        return
    device, processes = _run_device(cfg)
    from imgcls.runtime import resolve_amp

    half = resolve_amp(cfg.train.amp, device) in (torch.float16, torch.bfloat16)
    need = partial(profile.step_bytes, activation_bytes=2 if half else 4,
                   optimizer_states=2 if cfg.optim.optimizer == "adamw" else int(cfg.optim.momentum > 0))
    budget = _device_memory(device, processes)
    over_memory = budget is not None and need(size.side, batch) > budget[0]
    if size.side <= MAX_SIDE and not over_memory:
        return
    text = (f"{size.flag}: one training step of {m.model} at {size.side} px with --batch-size {batch} needs about "
            f"{human_bytes(need(size.side, batch))}")
    if not over_memory:
        raise ConfigError(f"{text}, and imgcls takes sides up to {MAX_SIDE} px; use at most {size.at(MAX_SIDE)}")
    room, where = budget
    fixed = need(size.side, 0)
    if fixed > room:
        raise ConfigError(f"{text}; {m.model}'s weights, gradients and optimizer state alone need about "
                          f"{human_bytes(fixed)}, and {where}")
    fits = []
    largest = _largest_side(need, batch, room)
    if not net.fixed_input_size and largest >= max(net.min_input_size):
        fits.append(size.at(largest))
    most = int((room - fixed) // (need(size.side, 1) - fixed))
    if size.side <= MAX_SIDE and most >= 1:
        fits.append(f"--batch-size {most}")
    advice = f"use at most {' or '.join(fits)}" if fits else "use a smaller size and --batch-size"
    raise ConfigError(f"{text}, and {where}; {advice}")


class _TrainSize:
    """The largest side a run trains at and the flag that sets it: --progressive's END when it is at
    least --input-size, else --input-size."""

    def __init__(self, input_size: int, spec: str | None, progressive: tuple[int, int] | None) -> None:
        self.start = progressive[0] if progressive is not None and progressive[1] >= input_size else None
        self.side = input_size if self.start is None else progressive[1]
        self.flag = f"--input-size {input_size}" if self.start is None else f"--progressive {spec}"

    def at(self, side: int) -> str:
        """The same flag with its largest side at `side`."""
        return f"--input-size {side}" if self.start is None else f"--progressive {min(self.start, side)}:{side}"


def _largest_side(need: Callable[[int, int], float], batch: int, room: float) -> int:
    """The largest multiple of 32 px (the stride of most CNNs) up to MAX_SIDE whose step fits in `room`."""
    per_px2 = (need(MAX_SIDE, batch) - need(0, batch)) / MAX_SIDE ** 2
    side = math.isqrt(max(0, int((room - need(0, batch)) / per_px2)))
    return min(MAX_SIDE, side // 32 * 32)


@lru_cache(maxsize=16)
def _profile(model: str, kwargs: str, transfer: str) -> StepProfile | None:
    """The step profile of a model as a run trains it (kwargs as JSON: a cache key), once per process:
    it costs a meta pass, about a second for the deepest DenseNet."""
    from imgcls.engine.transfer import TransferPolicy
    from imgcls.models.registry import get_builder

    net = meta_model(get_builder(model), json.loads(kwargs), TransferPolicy.parse(transfer))
    if net is None:
        return None
    side = max(net.min_input_size) if net.fixed_input_size else max(PROFILE_SIDE, *net.min_input_size)
    try:
        return step_profile(net, side)
    except Exception:  # noqa: BLE001 - an op without a meta kernel: the step is then not estimated
        return None


def _run_device(cfg: Config) -> tuple[torch.device, int]:
    """The device this process will train on (cuda:LOCAL_RANK under torchrun) and how many processes
    of the run share this machine's memory (the CPU ranks of torchrun)."""
    from imgcls.engine.distributed import env_world, rank_device

    _, world, local_rank, local_world = env_world()
    device = rank_device(cfg.train.device, local_rank=local_rank, world=world)
    return device, local_world if device.type != "cuda" else 1


def _device_memory(device: torch.device, processes: int) -> tuple[float, str] | None:
    """(bytes one process may use, where they come from, for the message), or None when unknown."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except RuntimeError:  # a driver that will not say: the run finds out for itself
            return None
        return free, f"{device} has {human_bytes(free)} free"
    avail = available_memory()
    if avail is None:
        return None
    where = f"this machine has {human_bytes(avail)} available"
    if processes > 1:
        return avail / processes, f"{where}, {human_bytes(avail / processes)} for each of its {processes} processes"
    return avail, where


# -- the cache of --feature-views: head/head+'s features, last:'s maps ---------------------------

def check_feature_cache(cfg: Config, images: int, val_images: int, *, processes: int = 1) -> None:
    """The cache of `--feature-views` (unset: 1) views of every training image and one of every validation
    image within this machine's memory: head/head+'s float32 features as wide as the head's input, or
    last:'s maps of the frozen prefix (--map-dtype), their shape found on the meta device. Every process
    of a run holds all of it; under DDP beside the share it ran and the gathering's copies (about twice)."""
    from imgcls.engine.transfer import TransferPolicy, find_split
    from imgcls.models.registry import get_builder

    d = cfg.data
    policy, views = TransferPolicy.parse(cfg.model.transfer), 1 if d.feature_views is None else d.feature_views
    net = meta_model(get_builder(cfg.model.model), cfg.model.model_kwargs, policy)
    avail = available_memory()
    if net is None or avail is None or views == 0:
        return
    last = policy.mode == "last"
    if last:
        try:
            split = find_split(net, policy, torch.empty(2, 3, d.input_size, d.input_size, device="meta"))
        except Exception:  # noqa: BLE001 - an op without a meta kernel: the cache is then not estimated
            return
        if isinstance(split, str):  # no split: nothing is cached (engine.plan says why)
            return
        shape, dtype = split.map_shape, d.map_dtype
    else:
        shape, dtype = (net.get_submodule(policy.head_name(net)).in_features,), "float32"
    per = math.prod(shape) * (2 if dtype == "float16" else 4) * (1 if processes == 1 else 2)
    need = (views * images + val_images) * per
    if need * processes <= avail:
        return
    most = int((avail / processes / per - val_images) // images)
    options = ([f"at most --feature-views {most}"] if most >= 1 else []) + (["a smaller --input-size"] if last else [])
    advice = "use " + "".join(f"{o}, " for o in options) + ("or " if options else "") + "--feature-views 0"
    what = f" as {' x '.join(map(str, shape))} {dtype} maps" if last else ""
    per_process = f" per process ({processes} processes)" if processes > 1 else ""
    raise ConfigError(f"--feature-views {views}: caching {views} view(s) of {images} training images{what} needs "
                      f"about {human_bytes(need)}{per_process}, and this machine has {human_bytes(avail)} "
                      f"available; {advice} ({'the frozen part' if last else 'the backbone'} then runs every step)")
