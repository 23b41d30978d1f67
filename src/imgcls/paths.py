"""Where imgcls keeps what it downloads and caches: one root for all of it.

    home()              $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls
    home() / "weights"  downloaded weight files (weights.fetch)
    home() / "decoded"  decoded-image caches of `train --cache` (data.cache; `imgcls cache`)
    bundled_photos()    the 300 flower photos shipped in the package (the demo; export's default check photos)
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def home() -> Path:
    if os.environ.get("IMGCLS_HOME"):
        return Path(os.environ["IMGCLS_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "imgcls"
    return Path.home() / ".cache" / "imgcls"


def bundled_photos() -> Path:
    """The 300 flower photos that ship with imgcls (assets/flowers_mini, 5 classes x 60, CC-BY credits in
    its LICENSE.txt): the demo's data, and real images where a command needs some and none are given."""
    return Path(str(resources.files("imgcls") / "assets" / "flowers_mini"))
