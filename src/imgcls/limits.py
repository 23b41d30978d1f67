"""Upper bounds on what a flag, a file's metadata or an upload may ask of the machine's memory.

Every size a user, a config file, a checkpoint or an exported file can set is checked against these
before any work starts, so a typo (`--input-size 20000`) or a tampered file (`"resize": 100000`) is one
line naming the value and what it would cost, never a machine that swaps until the kernel kills it.
"""
from __future__ import annotations

import os

# px: the largest resize, crop or input side anywhere (train, eval, checkpoints, exported metadata).
# 4096 px covers every photo-classification and segmentation resolution in use; one float32 RGB
# image at 4096x4096 is already 192 MiB before a network sees it.
MAX_SIDE = 4096

# px: the largest JPEG decoded at full size when the caller resizes it anyway (data.decode's `resize=`). One
# MAX_SIDE x MAX_SIDE photo, 16.8 MP (48 MiB as RGB), is above the 12-16 MP most cameras and phones save, so
# those keep torchvision's exact pixels; a bigger JPEG decodes reduced by draft mode (1/2, 1/4 or 1/8 scale).
REDUCE_ABOVE_PIXELS = MAX_SIDE * MAX_SIDE


def human_bytes(n: float) -> str:
    """Bytes as 4.1 TB, 1.2 GB, 412 MB, 35 kB or 900 B (powers of 1000), for messages and listings."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if unit in ("TB", "GB") else f"{n / scale:.0f} {unit}"
    return f"{int(n)} B"


def check_side(what: str, value: object, *, where: str = "") -> int:
    """`value` as a side in pixels within 1..MAX_SIDE, or ValueError naming `what` (and `where` it came from)."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{prefix}{what} {value!r}: must be a whole number of pixels")
    if not 1 <= value <= MAX_SIDE:
        raise ValueError(f"{prefix}{what} {value}: must be between 1 and {MAX_SIDE} px")
    return value


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get without swapping: Linux's MemAvailable (free memory
    plus the page cache it can drop), else the free physical pages; None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every system names these
        return None
