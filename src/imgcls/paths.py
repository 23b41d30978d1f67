"""Where imgcls keeps what it downloads and caches: one root for all of it.

    home()              $IMGCLS_HOME, else $XDG_CACHE_HOME/imgcls, else ~/.cache/imgcls
    home() / "weights"  downloaded weight files (weights.fetch)
    home() / "decoded"  decoded-image caches of `train --cache` (data.cache; `imgcls cache`)
    bundled_photos()    the 300 flower photos shipped in the package (the demo; export's default check photos)
    write_atomic()      write a file through a temporary file beside it and a rename (never half a file)
    process_alive()     whether the process that a pid-named temporary or marker file names still runs
    temp_prefix(), remove_stale_temps()
                        the temporary names of checkpoints and exports (`.NAME.PID.RANDOM.tmp`), and the
                        clean-up of those whose writer is gone (killed with kill -9)
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


TEMP_SUFFIX = ".tmp"


def temp_prefix(path: str | Path) -> str:
    """How a temporary file beside `path` starts: hidden, named after `path`, then this process's id
    (`.last.ckpt.PID.`), so that `remove_stale_temps` can tell a killed writer's leftovers from a live
    writer's file. Pass it to tempfile.mkstemp with suffix=TEMP_SUFFIX."""
    return f".{Path(path).name}.{os.getpid()}."


def remove_stale_temps(folder: str | Path, suffix: str) -> list[Path]:
    """Remove the temporary files (`temp_prefix`) of files named `*SUFFIX` in `folder` whose writer is
    no longer running: what a write interrupted by kill -9 leaves. A name without a process id
    (imgcls 0.1.0's checkpoints wrote `.NAME.RANDOM.tmp`) has no writer to wait for and goes too; the
    files of a live writer and every other file are kept."""
    removed = []
    for p in Path(folder).glob(f".*{suffix}.*{TEMP_SUFFIX}"):
        pid = p.name.rsplit(f"{suffix}.", 1)[1].split(".", 1)[0]  # the last: NAME may hold SUFFIX too
        if pid.isdigit() and process_alive(int(pid)):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
