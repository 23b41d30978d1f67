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

from imgcls.errors import ConfigError
from imgcls.imagenet import IMAGENET_MEAN, IMAGENET_STD
from imgcls.options import (check_value, device_option, draft_option, flag_name, images_option, label_col_option,
                            label_sep_option, option, path_col_option)



@dataclass
class ModelConfig:
    model: str = option("resnet18", "registered model name (see `imgcls models`)")
    weights: str | None = option(None, "pretrained weights: a file (torchvision .pth, imgcls .ckpt, .safetensors) "
                                   "or a registry name such as resnet18.tv_in1k")
    transfer: str = option("full", "what trains: full | last:<modules> (e.g. last:layer4,fc) | head | head+")
    backbone_lr_mult: float = option(1.0, "learning-rate multiplier for the pretrained (non-classifier) parameters", ge=0)
    model_kwargs: dict = option({}, "a builder argument, repeatable: KEY=VALUE (e.g. zero_init_residual=true) or a "
                                "JSON object", cli="model_kw")
    channels_last: bool | None = option(None, "NHWC memory layout (default: the model's preference, "
                                        "model.channels_last: about 1.4x faster for most CNNs on CPU)")
    compile: bool = option(False, "torch.compile the model (opt-in: small gains, long warm-up)")
    bn_fold: str = option("auto", "BatchNorm folded into the convolution before it: all (statistics frozen at the "
                          "pretrained values, gamma/beta still train: a faster step) | frozen (only the frozen "
                          "parts' BatchNorm, same numbers) | none | auto (all for --transfer full from pretrained "
                          "--weights on a CPU, else frozen)", choices=("auto", "all", "frozen", "none"))


@dataclass
class DataConfig:
    data: str = option("", "class-per-folder set, a split folder with train/ and val/, a split.json index, or a "
                       "CSV file of labels (path,label[,split]; docs/data.md)", cli="positional")
    images: str | None = images_option()
    path_col: str | None = path_col_option()
    label_col: str | None = label_col_option()
    label_sep: str | None = label_sep_option()
    val_data: str | None = option(None, "a separate validation set (default: DATA/val, or a split of DATA)")
    val_fraction: float = option(0.1, "when DATA is one class-per-folder tree: stratified validation fraction", gt=0, lt=1)
    split_seed: int = option(0, "seed of that split (the same as `imgcls split --seed`)", ge=0)
    input_size: int = option(224, "training crop and evaluation crop size", ge=1)
    resize_size: int | None = option(None, "evaluation: shorter side before the centre crop (default input/0.875; "
                                     "segmentation: no crop, default the val photos' own shorter side)", ge=1)
    whole_photo: bool = option(False, "train and evaluate on the whole photo, its shorter side resized to "
                               "--resize-size (no random or centre crop, so none cuts a label off; train: flipped); a "
                               "batch's photos must share one shape")
    scale: list = option([0.08, 1.0], "RandomResizedCrop area range: MIN MAX with 0 < MIN <= MAX <= 1", nargs=2,
                      type=float, gt=0, le=1)
    seg_scale: list = option([0.5, 2.0], "segmentation: the photo's shorter side scaled by a random factor in MIN MAX "
                             "of the eval size (--resize-size) before the --input-size crop", nargs=2, type=float,
                             gt=0, le=8)
    hflip: float = option(0.5, "horizontal-flip probability", ge=0, le=1)
    color_jitter: float = option(0.0, "brightness/contrast/saturation jitter strength (0 = off)", ge=0)
    interpolation: str = option("bilinear", "resampling filter: bilinear | bicubic | nearest",
                            choices=("bilinear", "bicubic", "nearest"))
    mean: list = option(list(IMAGENET_MEAN), "normalisation mean (RGB)", nargs=3, type=float)
    std: list = option(list(IMAGENET_STD), "normalisation std (RGB)", nargs=3, type=float, gt=0)
    batch_size: int = option(32, "images per step", ge=1)
    workers: int | None = option(None, "data-loading worker processes (default: on a CPU one per 4 cores, at least "
                                 "one, so the step keeps the cores; else one per core, at most 8; 0 = none)", ge=0)
    cache: bool = option(False, "decode every image once into a memory-mapped store (shorter side --cache-side)")
    cache_side: int = option(256, "shorter side of the decoded cache", ge=1)
    skip_bad: bool = option(False, "skip unreadable images with one warning instead of stopping")
    draft: bool = draft_option()
    sampler: str = option("shuffle", "the train order: shuffle (each image once per epoch) | balanced (draws with "
                          "replacement, every class equally often: for unbalanced classes)",
                          choices=("shuffle", "balanced"))
    feature_views: int | None = option(None, "head/head+/last:: cached views per image of the frozen part's output "
                                       "(the backbone's features; last:'s maps of the frozen stages): 1 = the "
                                       "centre crop, K > 1 = K augmented views, 0 = no cache (the frozen part "
                                       "runs every step); unset: 1, for last: 0 where its maps cannot stand in "
                                       "for the images (the log says why)", ge=0)
    feature_backend: str = option("auto", "what runs the frozen part over the images once (--feature-views): auto "
                                  "(ONNX Runtime on a CPU for 500+ images when imgcls[export] is installed, else "
                                  "PyTorch) | torch | onnxruntime", choices=("auto", "torch", "onnxruntime"))
    map_flip: bool = option(True, "last: on cached maps: flip each map horizontally with probability --hflip "
                            "(stands in for flipping the photo)")
    map_dtype: str = option("float16", "last: on cached maps: how they are stored: float16 (half the memory) | "
                            "float32", choices=("float16", "float32"))
    # recipe options (engine/recipes.py, data/augment.py), all off by default
    auto_augment: str = option("none", "per-image augmentation policy (torchvision's): none | trivialaugment "
                               "(TrivialAugmentWide) | randaugment", choices=("none", "trivialaugment", "randaugment"))
    randaugment_ops: int = option(2, "RandAugment: operations per image", ge=1)
    randaugment_magnitude: int = option(9, "RandAugment: magnitude bin, 0..30", ge=0, le=30)
    random_erasing: float = option(0.0, "random-erasing probability per image (the box is filled with the mean "
                                   "colour; 0 = off, 0.25 is common)", ge=0, le=1)
    mixup: float = option(0.0, "mixup alpha: batches mixed with lambda ~ Beta(alpha, alpha) (0 = off, 0.2 is common)", ge=0)
    cutmix: float = option(0.0, "cutmix alpha: a box of another image pasted in, area ~ Beta(alpha, alpha) "
                           "(0 = off, 1.0 is common)", ge=0)
    mix_prob: float = option(1.0, "with --mixup/--cutmix: the probability that a batch is mixed", ge=0, le=1)
    cutmix_share: float = option(0.5, "with both --mixup and --cutmix: the share of mixed batches that use cutmix",
                                 ge=0, le=1)
    progressive: str | None = option(None, "progressive resizing: START:END train crop sizes (e.g. 112:224), growing "
                                     "over the epochs; evaluation stays at --input-size")
    progressive_stages: int = option(0, "with --progressive: 0 = grow linearly (sizes rounded to 16 px), N >= 2 = "
                                     "N equal stages", ge=0)

    def csv_columns(self) -> Any:
        """How a CSV DATA is read (data.table.CsvColumns)."""
        from imgcls.data.table import CsvColumns

        return CsvColumns(self.images, self.path_col, self.label_col, self.label_sep)

    def image_recipes(self) -> list[str]:
        """The flags set that act on batches of images (so not on cached features or maps)."""
        return [flag for flag, on in (("--mixup", self.mixup > 0), ("--cutmix", self.cutmix > 0),
                                      ("--progressive", self.progressive is not None)) if on]

    def eval_resize(self) -> int:
        """The eval transform's resize side: --resize-size, else --input-size / 0.875 (torchvision's ratio)."""
        return self.resize_size or int(round(self.input_size / 0.875))


@dataclass
class OptimConfig:
    optimizer: str = option("sgd", "sgd | adamw", choices=("sgd", "adamw"))
    lr: float | None = option(None, "peak learning rate (default: sgd 0.1*batch/256, adamw 1e-3; find: the "
                                    "suggestion of the LR range test, imgcls lr-find, run first)", ge=0,
                              words=("find",))
    momentum: float = option(0.9, "SGD momentum", ge=0, lt=1)
    nesterov: bool = option(False, "Nesterov momentum")
    weight_decay: float | None = option(None, "weight decay (default: sgd 1e-4, adamw 0.05)", ge=0)
    decay_norm_bias: bool = option(False, "apply weight decay to normalisation and bias parameters too")
    schedule: str = option("cosine", "cosine | step | onecycle | constant | poly ((1 - t/T)^0.9, the segmentation "
                           "references'; segmentation's default)",
                           choices=("cosine", "step", "onecycle", "constant", "poly"))
    warmup_epochs: float = option(0.0, "linear warm-up from 0 over this many epochs", ge=0)
    step_size: int = option(30, "step schedule: epochs between decays", ge=1)
    gamma: float = option(0.1, "step schedule: decay factor", gt=0)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", ge=0, lt=1)
    class_weights: str = option("none", "per-class loss weights, mean 1: none | balanced (inverse class frequency) | "
                                "effective (Cui et al. 2019: (1-beta)/(1-beta^n)) | median-frequency (segmentation, "
                                "SegNet's: the median class share over each class's share of the train masks' pixels)",
                                choices=("none", "balanced", "effective", "median-frequency"))
    pos_weight: str = option("none", "multi-label: each class's positives weighed in its binary cross-entropy: none | "
                             "balanced (negatives / positives in the train part) | sqrt (its square root)",
                             choices=("none", "balanced", "sqrt"))
    class_weights_beta: float = option(0.999, "--class-weights effective: beta", gt=0, lt=1)
    clip_grad: float | None = option(None, "clip the gradient norm to this value", gt=0)
    ema_decay: float | None = option(None, "keep an exponential moving average of the weights with this decay per "
                                     "step (e.g. 0.999): validated beside the raw weights, saved in checkpoints "
                                     "and used by eval/predict", gt=0, lt=1)


@dataclass
class TrainConfig:
    epochs: int = option(30, "training epochs (on --resume: the new total, to train further)", ge=1)
    seed: int = option(0, "seed of initialisation, data order and augmentation", ge=0)
    device: str = device_option()
    amp: str = option("auto", "mixed precision: auto (bf16, or fp16 with a scaler, on CUDA; off on CPU) "
                          "| off | bf16 | fp16", choices=("auto", "off", "bf16", "fp16"))
    deterministic: bool = option(True, "deterministic algorithms (bit-exact resume on CPU)")
    patience: int | None = option(None, "early stopping: epochs without a better --metric", ge=1)
    metric: str = option("top1", "the validation number that picks best.ckpt (and early stopping): top1 | "
                         "balanced_acc (mean per-class recall) | macro_f1 | map (multi-label: macro mAP, its default)",
                         choices=("top1", "balanced_acc", "macro_f1", "map"))
    aux_weight: float = option(0.3, "weight of auxiliary-classifier losses (GoogLeNet), 0.3 as in the paper", ge=0)
    out_dir: str = option("runs", "parent folder of run folders")
    name: str | None = option(None, "run folder name (default: exp1, exp2, ...; with --resume: continue in this new folder)")
    resume: str | None = option(None, "continue from this checkpoint (e.g. runs/exp1/last.ckpt); only --epochs, --workers, "
                                   "--device, --progress, --save-every, --patience, --tensorboard, --feature-backend, the data path and "
                                   "--name/--out-dir may change")
    save_every: int = option(0, "also checkpoint every N steps inside an epoch (0: at epoch ends only)", ge=0)
    progress: bool = option(True, "show progress: a bar on a terminal, elsewhere (a log file, CI) a line at "
                                  "25/50/75% of a pass that takes more than 10 s")
    tensorboard: bool = option(True, "write TensorBoard events when tensorboard is installed")
    sync_bn: bool = option(False, "under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)")
    dist_timeout: int = option(600, "under torchrun: seconds a rank waits for the others before the run stops "
                                    "with an error", ge=1)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}


@dataclass
class LRFindOptions:
    """`imgcls lr-find`'s own flags (beside every flag of train, which set up the run it tests)."""

    start_lr: float = option(1e-7, "the range test's first learning rate", gt=0)
    end_lr: float = option(10.0, "its last learning rate (it stops earlier once the loss diverges)", gt=0)
    find_steps: int = option(100, "at most this many training steps (the rate grows geometrically over them)",
                             ge=5, le=10000, flag="--steps")
    plot: str | None = option(None, "where to draw loss against learning rate (default: OUT_DIR/lr_find.png)")
    json: bool = option(False, "print the curve and the suggestion as JSON", cli="switch")


# imgcls lr-find: train's sections (the run it tests) and its own
LR_FIND_SECTIONS = {**SECTIONS, "lr-find": LRFindOptions}


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
        """A Config from nested dicts (a config file, a checkpoint); every value is checked against its
        field's type and range, so `epochs: ten` is a one-line ConfigError naming the file and key."""
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {list(SECTIONS)}")
        specs = {f.name: (f, typ) for _, f, typ in field_specs()}
        parts = {}
        for name, klass in SECTIONS.items():
            values = d.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {name!r} must be a mapping of settings, got {values!r}")
            known = {f.name for f in dataclasses.fields(klass)}
            bad = set(values) - known
            if bad:
                raise ConfigError(f"{source}: unknown {name} setting(s) {sorted(bad)}")
            parts[name] = klass(**{k: check_value(f"{source}: {name}.{k}", v, *specs[k]) for k, v in values.items()})
        return cls(**parts)

    def validate(self) -> Config:
        """Check every field and the rules between fields; a one-line ConfigError for the first problem.

        Runs before any work (a run checks its config before it scans data), so a bad value costs a
        second, not the minutes of a data scan.
        """
        for section, f, typ in field_specs():
            sec = getattr(self, section)
            setattr(sec, f.name, check_value(flag_name(f.name), getattr(sec, f.name), f, typ))
        d, m = self.data, self.model
        if d.scale[0] > d.scale[1]:
            raise ConfigError(f"--scale {d.scale[0]} {d.scale[1]}: MIN must not exceed MAX (e.g. --scale 0.08 1.0)")
        from imgcls.models.registry import task_of

        dense = task_of(m.model) == "segmentation"
        if dense:
            from imgcls.engine.dense import check_dense

            check_dense(self, DataConfig())
        elif d.resize_size is not None and d.resize_size < d.input_size and not d.whole_photo:
            raise ConfigError(f"--resize-size {d.resize_size} is smaller than --input-size {d.input_size}; "
                              "the centre crop needs resize >= input size")
        from imgcls.engine.budget import check_sizes, meta_model
        from imgcls.engine.transfer import TransferPolicy
        from imgcls.models.registry import get_builder

        policy = TransferPolicy.parse(m.transfer)
        net = meta_model(get_builder(m.model), m.model_kwargs, policy)  # unknown names: close matches
        progressive = parse_progressive(d.progressive) if d.progressive is not None else None
        check_sizes(self, net, progressive)
        if (policy.caches_features and d.feature_views != 0) or (policy.mode == "last" and d.feature_views):
            mixing = d.image_recipes()
            what, runs = ("maps", "the frozen part") if policy.mode == "last" else ("features", "the backbone")
            if mixing:
                raise ConfigError(f"{mixing[0]} works on images, but --transfer {m.transfer} trains on cached "
                                  f"{what}; add --feature-views 0 ({runs} runs every step) or drop {mixing[0]}")
        # settings that act only beside another: given alone they would be ignored without a word
        maps = policy.mode == "last" and d.feature_views != 0
        for name, needs, example, on in (
                ("mix_prob", "--mixup or --cutmix", "--mixup 0.2 or --cutmix 1.0", d.mixup > 0 or d.cutmix > 0),
                ("cutmix_share", "both --mixup and --cutmix", "--mixup 0.2 --cutmix 1.0", d.mixup > 0 and d.cutmix > 0),
                ("progressive_stages", "--progressive", "--progressive 112:224", d.progressive is not None),
                ("randaugment_ops", "--auto-augment randaugment", "--auto-augment randaugment",
                 d.auto_augment == "randaugment"),
                ("randaugment_magnitude", "--auto-augment randaugment", "--auto-augment randaugment",
                 d.auto_augment == "randaugment"),
                ("map_flip", "--transfer last: on cached maps", "--transfer last:MODULES", maps),
                ("map_dtype", "--transfer last: on cached maps", "--transfer last:MODULES", maps),
                ("seg_scale", "a segmentation model", "--model lraspp_efficientnet_lite0", dense)):
            value = getattr(d, name)
            if not on and value != getattr(DataConfig(), name):
                value = " ".join(map(str, value)) if isinstance(value, list) else value
                flag = f"--no-{flag_name(name)[2:]}" if value is False else f"{flag_name(name)} {value}"
                raise ConfigError(f"{flag} has no effect without {needs}; add {example}, or drop "
                                  f"{flag.split()[0]}")
        if d.whole_photo and d.progressive is not None:
            raise ConfigError("--progressive resizes square crops, and --whole-photo trains on whole photos; drop one")
        o = self.optim
        if o.class_weights != "effective" and o.class_weights_beta != OptimConfig().class_weights_beta:
            raise ConfigError(f"--class-weights-beta {o.class_weights_beta} has no effect without --class-weights "
                              "effective; add --class-weights effective, or drop --class-weights-beta")
        return self

    def changed_fields(self) -> set[str]:
        """Names of the fields whose value differs from the default."""
        default = Config()
        return {f.name for section, f, _ in field_specs()
                if getattr(getattr(self, section), f.name) != getattr(getattr(default, section), f.name)}

    def get(self, name: str) -> Any:
        """A field's value by its unique name (`batch_size`)."""
        for section, f, _ in field_specs():
            if f.name == name:
                return getattr(getattr(self, section), name)
        raise ConfigError(f"unknown setting {name!r}")

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
            try:
                d = yaml.safe_load(text)
            except yaml.constructor.ConstructorError as e:
                raise ConfigError(f"{path}: refused: {e.problem} ({_yaml_mark(e)}); a config holds plain values, "
                                  "never Python objects") from None
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {getattr(e, 'problem', None) or e} ({_yaml_mark(e)})") from None
        else:
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of sections {list(SECTIONS)}")
        return cls.from_dict(d, source=str(path))


def parse_progressive(spec: str) -> tuple[int, int]:
    """'112:224' -> (112, 224). ConfigError with the fix otherwise: both sizes are needed, so a single
    number is never read one way while the user meant the other."""
    try:
        sizes = [int(p) for p in spec.split(":")]
    except ValueError:
        sizes = []
    if len(sizes) != 2 or min(sizes) < 1:
        raise ConfigError(f"--progressive {spec!r}: expected START:END train sizes in pixels, small first (START at "
                          "the first epoch, END at the last), e.g. --progressive 112:224")
    if sizes[0] > sizes[1]:
        raise ConfigError(f"--progressive {spec}: START must not exceed END (small images first), e.g. "
                          f"--progressive {sizes[1]}:{sizes[0]}")
    return sizes[0], sizes[1]


def _yaml_mark(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "no position"


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
