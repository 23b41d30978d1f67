"""File names made printable: Linux allows any bytes but `/` and NUL in a name, not only UTF-8."""
from __future__ import annotations

import os
from pathlib import Path


def safe_name(path: str | Path) -> str:
    """`path` as valid UTF-8 text that any stream prints: undecodable bytes become `\\xff` escapes.

    Python carries such names with surrogate escapes ('bad\\udcff.jpg'), which open fine but make
    `print` and UTF-8 writers raise; this is for messages and reports, never for opening the file.
    """
    text = os.fspath(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decoding made (a hand-edited split.json)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
