"""The one loader: state dicts go into models here, through the model's own `remap_state_dict`.

`load_pretrained(model, state_dict)` copies every tensor whose name and shape match; only the
classifier may disagree (a 1000-way ImageNet head in a 5-class model) and starts fresh. The
`LoadReport` says what loaded and what did not; anything else that does not fit is an error.
`load_weights(model, name_or_path)` chains `resolve_weights`, `read_state_dict` and
`load_pretrained`. `build_pretrained(arch, state_dict)` is the one way a network is built with
pretrained weights (training with --weights, predicting with a weights name, `imgcls.create_model`):
built by `imgcls.models.create_model` (layer 1, no I/O), the file loaded, the head reset or stacked.
`create_model_with_weights` is `imgcls.create_model`: `weights=` through the same reader and that
path, strictly for a file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.errors import ConfigError, WeightsError, summary_of
from imgcls.models import create_model
from imgcls.models.registry import get_builder
from imgcls.models.heads import head_of, stack_head
from imgcls.weights.fetch import resolve_weights
from imgcls.weights.reader import read_state_dict
from imgcls.weights.specs import WeightSpec, spec_model_kwargs

log = logging.getLogger(__name__)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _fmt_keys(keys: list[str], limit: int = 5) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclass
class LoadReport:
    """What `load_pretrained` did with each tensor of the file and of the model."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    classifier_name: str | None = None
    extra_heads: tuple[str, ...] = ()  # further class-sized layers, e.g. GoogLeNet's aux1.fc2, aux2.fc2

    def _in_head(self, key: str) -> bool:
        heads = ((self.classifier_name,) if self.classifier_name is not None else ()) + self.extra_heads
        return any(key.startswith(h + ".") for h in heads)

    @property
    def total(self) -> int:
        """The number of tensors in the model's state dict."""
        return len(self.loaded) + len(self.skipped_shape) + len(self.missing)

    @property
    def head_only(self) -> bool:
        """True when every tensor that did not load belongs to the classifier (vacuously when all did)."""
        keys = [k for k, _, _ in self.skipped_shape] + self.missing + self.unexpected
        return all(self._in_head(k) for k in keys)

    def to_text(self) -> str:
        lines = [f"loaded {len(self.loaded)}/{self.total} tensors from {self.source}"]
        head_skipped = [s for s in self.skipped_shape if self._in_head(s[0])]
        if head_skipped:
            key, file_shape, model_shape = next((s for s in head_skipped if s[0].endswith(".weight")), head_skipped[0])
            classes = f" ({model_shape[0]} classes)" if key.endswith(".weight") and model_shape else ""
            lines.append(f"the last layer cannot take the pretrained parameters: {key} is {_fmt_shape(file_shape)} "
                         f"in the file and {_fmt_shape(model_shape)} in the model{classes}; "
                         "it starts from a fresh initialisation")
        head_missing = [k for k in self.missing if self._in_head(k)]
        if head_missing:
            lines.append(f"the file has no classifier ({_fmt_keys(head_missing)}); "
                         "the last layer starts from a fresh initialisation")
        head_unexpected = [k for k in self.unexpected if self._in_head(k)]
        if head_unexpected:
            lines.append(f"the file's classifier is not used, the model has none: {_fmt_keys(head_unexpected)}")
        other_skipped = [f"{k} {_fmt_shape(f)} in the file, {_fmt_shape(m)} in the model"
                         for k, f, m in self.skipped_shape if not self._in_head(k)]
        for label, keys in (("skipped for a shape mismatch", other_skipped),
                            ("missing from the file", [k for k in self.missing if not self._in_head(k)]),
                            ("unexpected in the file", [k for k in self.unexpected if not self._in_head(k)])):
            if keys:
                lines.append(f"{label}: {_fmt_keys(keys)}")
        return "\n".join(lines)


def load_pretrained(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights",
                    classifier_name: str | None = None) -> LoadReport:
    """Copy every tensor of `state_dict` whose name and shape match into `model`; report the rest.

    `model` answers imgcls's model contract (imgcls.models.base.ClassifierMixin). Only the
    classifier (`classifier_name`, by default the model's own, e.g. "fc" or "classifier.6", plus
    the model's `extra_head_names` such as GoogLeNet's auxiliary outputs) may disagree with the
    file: a different number of classes, or a headless model or file. Those tensors are skipped
    and keep the model's fresh initialisation. Anything else that is mismatched, missing or
    unexpected raises WeightsError and loads nothing. The model's `remap_state_dict` (legacy key
    names, another ViT grid) is applied first.
    """
    state_dict = model.remap_state_dict(dict(state_dict))
    head = classifier_name if classifier_name is not None else model.classifier_name
    report = LoadReport(source=source, classifier_name=head,
                        extra_heads=model.extra_head_names if classifier_name is None else ())
    model_state = model.state_dict()
    filtered: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in model_state:
            report.unexpected.append(key)
            continue
        file_shape, model_shape = tuple(getattr(value, "shape", ())), tuple(getattr(model_state[key], "shape", ()))
        if file_shape != model_shape:  # (`_extra_state` entries need not be tensors: no shape)
            report.skipped_shape.append((key, file_shape, model_shape))
        else:
            filtered[key] = value
            report.loaded.append(key)
    report.missing = [k for k in model_state if k not in state_dict]

    if not report.head_only:
        _raise_misfit(model, report, model_state, state_dict)
    result = model.load_state_dict(filtered, strict=False)
    # load_state_dict's own bookkeeping must agree with ours: what it lacks is what we held back
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) == set(report.missing) | {k for k, _, _ in report.skipped_shape}
    return report


def _raise_misfit(model: nn.Module, report: LoadReport, model_state: Mapping[str, torch.Tensor],
                  state_dict: Mapping[str, torch.Tensor]) -> None:
    """The one-line WeightsError for a file that does not fit beyond the classifier."""
    name = type(model).__name__
    if not report.loaded:
        raise WeightsError(
            f"{report.source}: none of its {len(state_dict)} tensors fits this {name} (its keys look like "
            f"{_fmt_keys(list(state_dict), 3)}; the model's like {_fmt_keys(list(model_state), 3)}); "
            "is it a weight file for another architecture?")
    shape = [(k, f, m) for k, f, m in report.skipped_shape if not report._in_head(k)]
    missing = [k for k in report.missing if not report._in_head(k)]
    unexpected = [k for k in report.unexpected if not report._in_head(k)]
    counts = [f"{n} {what}" for n, what in ((len(shape), "of another shape"), (len(missing), "missing from the file"),
                                           (len(unexpected), "unexpected")) if n]
    examples = [f"{k} is {_fmt_shape(f)} in the file and {_fmt_shape(m)} in the model" for k, f, m in shape[:1]]
    examples += [f"missing {k}" for k in missing[:1]] + [f"unexpected {k}" for k in unexpected[:1]]
    raise WeightsError(
        f"{report.source} does not fit this {name} (tensors: {', '.join(counts)}; e.g. {'; '.join(examples)}); "
        "is it a weight file for another architecture or depth (e.g. resnet50 weights for a resnet18)?")


def load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, target: str) -> None:
    """Every tensor of the model from the file (through its `remap_state_dict`), the classifier
    included, nothing left over."""
    try:
        model.load_state_dict(model.remap_state_dict(dict(state_dict)), strict=True)
    except RuntimeError as e:  # torch lists every problem, one per line after a heading: keep the first
        first = summary_of(e)
        raise WeightsError(f"{source}: does not fit {target}: {first}") from None


def load_weights(model: nn.Module, name_or_path: str | os.PathLike | WeightSpec, *,
                 cache_dir: str | os.PathLike | None = None, download_missing: bool = True) -> LoadReport:
    """`resolve_weights`, `read_state_dict` and `load_pretrained` in one call."""
    path = resolve_weights(name_or_path, cache_dir=cache_dir, download_missing=download_missing)
    state, _ = read_state_dict(path)
    return load_pretrained(model, state, source=path.name)


def create_network(name: str, num_classes: int, model_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """`create_model(name, num_classes, **model_kwargs)`, an argument the builder does not take being one
    ConfigError naming the model (the arguments come from a checkpoint, a config or a weights spec)."""
    kwargs = dict(model_kwargs or {})
    try:
        return create_model(name, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"{name} does not take the model arguments {kwargs}: {e}") from None


@dataclass
class Pretrained:
    """What `build_pretrained` made: the network, the classifier width its file gave a stacked head
    (None for a linear one), and the LoadReport (None for a strict load or no file)."""

    model: nn.Module
    base_classes: int | None = None
    report: LoadReport | None = None


def build_pretrained(arch: dict[str, Any], state_dict: Mapping[str, torch.Tensor] | None, *, source: str,
                     strict: bool = False, target: str | None = None) -> Pretrained:
    """The network `arch` describes ({"model", "num_classes", "model_kwargs", "head", "base_classes"}) with
    pretrained weights: built at its class count, then for a stacked head (head+ transfer) its classifier
    reset to the file's width (`base_classes`, else the file's classifier rows, else 1000); the file
    loaded, `strict`ly (every tensor, the classifier included: a WeightsError naming `target` otherwise)
    or by `load_pretrained` (a classifier of another width keeps its fresh initialisation, as the report
    says); then the stacked head's new layer put on top. `state_dict` None builds without loading (a run
    resumed from its checkpoint loads that instead)."""
    num_classes = arch["num_classes"]
    model = create_network(arch["model"], num_classes, arch.get("model_kwargs"))
    stacked = head_of(arch) == "stacked"
    base_classes = None
    if stacked:  # keep the pretrained classifier: at its own width, the new classes on top
        key = f"{model.classifier_name}.weight"
        base_classes = int(arch.get("base_classes") or (
            state_dict[key].shape[0] if state_dict is not None and key in state_dict else 1000))
        model.reset_classifier(base_classes)
    report = None
    if state_dict is not None and strict:
        load_strict(model, state_dict, source=source, target=target or f"{arch['model']} with {num_classes} classes")
    elif state_dict is not None:
        report = load_pretrained(model, state_dict, source=source)
    if stacked:
        stack_head(model, num_classes)
    return Pretrained(model, base_classes, report)


def create_model_with_weights(name: str, num_classes: int | None = None,
                              weights: str | os.PathLike | WeightSpec | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model `name` and load `weights` into it; this is `imgcls.create_model`.

    `num_classes=None` is the builder's default (1000; a segmentation model's 21). A weight file (a
    state dict saved from this model, plain or from DDP/torch.compile, an imgcls or Lightning
    checkpoint, a .safetensors file) is loaded strictly: a file for another number of classes is an
    error naming `num_classes`. A registry name or spec ("resnet18",
    "resnet50.tv2_in1k") is fetched by `resolve_weights` and loaded by `load_pretrained`: with
    another `num_classes` than the spec's, the classifier starts fresh (the report is logged).
    """
    if weights is None:
        return create_model(name, num_classes=num_classes, **kwargs)
    get_builder(name)  # an unknown model is refused before any download
    # the same rule as resolve_weights: a Path or an existing file is a file, any other string a name
    registered = isinstance(weights, WeightSpec) or (
        isinstance(weights, str) and not Path(weights).expanduser().is_file())
    path = resolve_weights(weights)
    state, _ = read_state_dict(path)
    # what the weights were trained with (googlenet's transform_input), under the caller's own arguments
    arch = {"model": name, "num_classes": num_classes, "model_kwargs": {**spec_model_kwargs(weights, name), **kwargs}}
    built = build_pretrained(arch, state, source=path.name if registered else str(path), strict=not registered,
                             target=name if num_classes is None else f"{name} with num_classes={num_classes}")
    if built.report is not None:
        log.info("%s", built.report.to_text())
    return built.model
