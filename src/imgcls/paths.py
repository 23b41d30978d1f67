"""Where imgcls keeps what it downloads and caches: one root for all of it.

    home()              $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls
    home() / "weights"  downloaded weight files (weights.fetch)
    home() / "decoded"  decoded-image caches of `train --cache` (data.cache; `imgcls cache`)
    bundled_photos()    the 300 flower photos shipped in the package (the demo; export's default check photos)
    write_atomic()      write a file through a temporary file beside it and a rename (never half a file)
    process_alive()     whether the process that a pid-named temporary or marker file names still runs
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
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


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary path)` beside `path`, then rename the file into place, so a reader (or a
    crash) sees the old file or the new one, never half of one; the temporary file is removed when
    `write` fails. Its name is hidden and unique per process and thread, and it is created by
    `write` itself, so the file gets the usual permissions (umask), not a private temp file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically (write_atomic)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (this one included): signal 0 only asks, it delivers nothing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
