"""Where imgcls keeps what it downloads and caches: one root for all of it.

    home()              $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls
    home() / "weights"  downloaded weight files (weights.fetch)
    home() / "decoded"  decoded-image caches of `train --cache` (data.cache; `imgcls cache`)
"""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    if os.environ.get("IMGCLS_HOME"):
        return Path(os.environ["IMGCLS_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "imgcls"
    return Path.home() / ".cache" / "imgcls"
