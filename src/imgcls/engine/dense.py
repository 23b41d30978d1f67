"""What a segmentation run cannot train with: the settings that act on a classifier's whole images or
cached features only. Config.validate calls check_dense for a segmentation model (it imports nothing
from engine.config, which imports it lazily)."""
from __future__ import annotations

from typing import Any

from imgcls.errors import ConfigError
from imgcls.options import flag_name

# what acts on a classifier's images or features only: refused for a segmentation model (flag, why)
_NOT_DENSE = (("mixup", "mixes labels of whole images"), ("cutmix", "mixes labels of whole images"),
              ("progressive", "resizes images without their masks"),
              ("auto_augment", "moves the photo without its mask"),
              ("random_erasing", "erases the photo without its mask"), ("cache", "caches photos without their masks"),
              ("draft", "decodes photos smaller than their masks"),
              ("scale", "is the classifier's crop area; segmentation scales by --seg-scale"))


def check_dense(cfg: Any, defaults: Any) -> None:
    """The settings of `cfg` (an engine Config) a segmentation model cannot train with, each refused in one
    line; `defaults`: a default DataConfig (what "not given" means)."""
    d, m = cfg.data, cfg.model
    for name, why in _NOT_DENSE:
        if getattr(d, name) != getattr(defaults, name):
            raise ConfigError(f"{flag_name(name)}: {why}, so it does not apply to segmentation ({m.model}); drop it")
    if m.transfer in ("head", "head+"):
        raise ConfigError(f"--transfer {m.transfer} trains a classifier on cached features; a segmentation model "
                          "trains with --transfer full or last:MODULES (e.g. last:classifier)")
    if d.feature_views:
        raise ConfigError(f"--feature-views {d.feature_views}: a segmentation model trains on photos and masks, not on "
                          "cached maps; use --feature-views 0 or leave it out")
