"""File names made printable: Linux allows any bytes but `/` and NUL in a name, not only UTF-8."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: a terminal acts on them (colours, cursor)


def safe_name(path: str | Path) -> str:
    """`path` as valid UTF-8 text that any stream prints on one line: undecodable bytes become `\\xff`
    escapes, control characters (a newline, ESC) `\\x0a`, `\\x1b`.

    Python carries undecodable names with surrogate escapes ('bad\\udcff.jpg'), which open fine but make
    `print` and UTF-8 writers raise; a name with ESC in it could recolour or rewrite a terminal, one with
    a newline forge a line of a report. This is for messages and reports, never for opening the file.
    """
    text = os.fspath(path)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decoding made (a hand-edited split.json)
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def skipped_line(paths: Sequence[str | Path]) -> str:
    """"skipped N unreadable image(s): a, b, c, d, e, ..." (the first five, printable): the one line that
    says which files a command left out (eval's log and report, predict, training with --skip-bad)."""
    names = ", ".join(safe_name(p) for p in paths[:5])
    return f"skipped {len(paths)} unreadable image(s): {names}{', ...' if len(paths) > 5 else ''}"


def findings_lines(findings: dict[str, list[str]], *, verbose: bool = False, examples: int = 5) -> list[str]:
    """`imgcls check`'s findings as lines: each kind with its count and its first `examples` items (all of
    them with `verbose`), then the total, or "clean"."""
    lines = []
    found = {kind: items for kind, items in findings.items() if items}
    for kind, items in found.items():
        shown = items if verbose else items[:examples]
        lines.append(f"{kind}: {len(items)}")
        lines += [f"  {item}" for item in shown]
        if len(items) > len(shown):
            lines.append(f"  ... and {len(items) - len(shown)} more (--verbose lists them all)")
    n = sum(map(len, found.values()))
    return lines + [f"{n} finding(s)" if n else "clean"]
