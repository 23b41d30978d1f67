"""A training run's settings: one dataclass per concern, one CLI flag per field.

`Config` groups `ModelConfig`, `DataConfig`, `OptimConfig` and `TrainConfig`. Field names are
unique across the four, and `imgcls train` generates its flags from them (`--batch-size` is
`data.batch_size`), so a flag can never drift from the field it sets. A run saves the resolved
config as config.json (and config.yaml when PyYAML is installed); `--config FILE` replays it and
any flag given beside it wins.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcls.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from imgcls.errors import ConfigError


def _f(default: Any, help: str, **kw) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    model: str = _f("resnet18", "registered model name (see `imgcls models`)")
    weights: str | None = _f(None, "pretrained weights: a file (torchvision .pth, imgcls .ckpt, .safetensors) "
                                   "or a registry name such as resnet18.tv_in1k")
    transfer: str = _f("full", "what trains: full | last:<modules> (e.g. last:layer4,fc) | head | head+")
    backbone_lr_mult: float = _f(1.0, "learning-rate multiplier for the pretrained (non-classifier) parameters")
    model_kwargs: dict = _f({}, "extra builder arguments, e.g. {\"zero_init_residual\": true}", cli="json")
    channels_last: bool = _f(True, "NHWC memory layout (about 1.4x faster for CNNs on CPU)")
    compile: bool = _f(False, "torch.compile the model (opt-in: small gains, long warm-up)")


@dataclass
class DataConfig:
    data: str = _f("", "class-per-folder set, a split folder with train/ and val/, or a split.json index",
                   cli="positional")
    val_data: str | None = _f(None, "a separate validation set (default: DATA/val, or a split of DATA)")
    val_fraction: float = _f(0.1, "when DATA is one class-per-folder tree: stratified validation fraction")
    split_seed: int = _f(0, "seed of that split (the same as `imgcls split --seed`)")
    input_size: int = _f(224, "training crop and evaluation crop size")
    resize_size: int | None = _f(None, "evaluation: shorter side before the centre crop (default input/0.875)")
    scale: list = _f([0.08, 1.0], "RandomResizedCrop area range", nargs=2, type=float)
    hflip: float = _f(0.5, "horizontal-flip probability")
    color_jitter: float = _f(0.0, "brightness/contrast/saturation jitter strength (0 = off)")
    interpolation: str = _f("bilinear", "resampling filter: bilinear | bicubic | nearest",
                            choices=("bilinear", "bicubic", "nearest"))
    mean: list = _f(list(IMAGENET_MEAN), "normalisation mean (RGB)", nargs=3, type=float)
    std: list = _f(list(IMAGENET_STD), "normalisation std (RGB)", nargs=3, type=float)
    batch_size: int = _f(32, "images per step")
    workers: int | None = _f(None, "data-loading worker processes (default: one per core, at most 8; 0 = none)")
    cache: bool = _f(False, "decode every image once into a memory-mapped store (shorter side --cache-side)")
    cache_side: int = _f(256, "shorter side of the decoded cache")
    skip_bad: bool = _f(False, "skip unreadable images with one warning instead of stopping")
    feature_views: int = _f(1, "head/head+: cached backbone views per image (1 = the centre crop; "
                               "K > 1 = K augmented views; 0 = no cache, the backbone runs every step)")


@dataclass
class OptimConfig:
    optimizer: str = _f("sgd", "sgd | adamw", choices=("sgd", "adamw"))
    lr: float | None = _f(None, "peak learning rate (default: sgd 0.1*batch/256, adamw 1e-3)")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "Nesterov momentum")
    weight_decay: float | None = _f(None, "weight decay (default: sgd 1e-4, adamw 0.05)")
    decay_norm_bias: bool = _f(False, "apply weight decay to normalisation and bias parameters too")
    schedule: str = _f("cosine", "cosine | step | onecycle | constant",
                       choices=("cosine", "step", "onecycle", "constant"))
    warmup_epochs: float = _f(0.0, "linear warm-up from 0 over this many epochs")
    step_size: int = _f(30, "step schedule: epochs between decays")
    gamma: float = _f(0.1, "step schedule: decay factor")
    label_smoothing: float = _f(0.0, "cross-entropy label smoothing")
    clip_grad: float | None = _f(None, "clip the gradient norm to this value")


@dataclass
class TrainConfig:
    epochs: int = _f(30, "training epochs")
    seed: int = _f(0, "seed of initialisation, data order and augmentation")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    amp: str = _f("auto", "mixed precision: auto (bf16, or fp16 with a scaler, on CUDA; off on CPU) "
                          "| off | bf16 | fp16", choices=("auto", "off", "bf16", "fp16"))
    deterministic: bool = _f(True, "deterministic algorithms (bit-exact resume on CPU)")
    patience: int | None = _f(None, "early stopping: epochs without a better val top-1")
    aux_weight: float = _f(0.3, "weight of auxiliary-classifier losses (GoogLeNet), 0.3 as in the paper")
    out_dir: str = _f("runs", "parent folder of run folders")
    name: str | None = _f(None, "run folder name (default: exp1, exp2, ...)")
    resume: str | None = _f(None, "continue from this checkpoint (e.g. runs/exp1/last.ckpt)")
    save_every: int = _f(0, "also checkpoint every N steps inside an epoch (0: at epoch ends only)")
    progress: bool = _f(True, "tqdm progress bars")
    tensorboard: bool = _f(True, "write TensorBoard events when tensorboard is installed")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> Config:
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {list(SECTIONS)}")
        parts = {}
        for name, klass in SECTIONS.items():
            values = dict(d.get(name) or {})
            known = {f.name for f in dataclasses.fields(klass)}
            bad = set(values) - known
            if bad:
                raise ConfigError(f"{source}: unknown {name} setting(s) {sorted(bad)}")
            parts[name] = klass(**values)
        return cls(**parts)

    def set(self, key: str, value: Any) -> None:
        """Set a field by its unique name (`batch_size`) or dotted path (`data.batch_size`)."""
        section, _, name = key.rpartition(".")
        for sec_name, klass in SECTIONS.items():
            if (not section or section == sec_name) and name in {f.name for f in dataclasses.fields(klass)}:
                setattr(getattr(self, sec_name), name, value)
                return
        raise ConfigError(f"unknown setting {key!r}")

    def save(self, run_dir: str | Path) -> Path:
        run_dir = Path(run_dir)
        path = run_dir / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        try:
            import yaml
        except ImportError:
            return path
        (run_dir / "config.yaml").write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use config.json") from None
            d = yaml.safe_load(text)
        else:
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of sections {list(SECTIONS)}")
        return cls.from_dict(d, source=str(path))


def field_specs() -> list[tuple[str, dataclasses.Field, type]]:
    """(section, field, resolved type) for every field: what the CLI builds its flags from."""
    out = []
    for section, klass in SECTIONS.items():
        hints = typing.get_type_hints(klass)
        for f in dataclasses.fields(klass):
            out.append((section, f, hints[f.name]))
    return out


def _check_unique_names() -> None:
    names = [f.name for _, f, _ in field_specs()]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"config field names must be unique across sections: {dup}"


_check_unique_names()
