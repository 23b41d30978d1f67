"""One exception type per family of user mistakes; the CLI prints them on one line and exits 2."""
from __future__ import annotations

import json


def summary_of(error: BaseException, limit: int = 160) -> str:
    """One line that says what a library exception says: its first non-empty line, or the next one when
    the first only introduces it ("Error(s) in loading state_dict for ResNet:"), or its type's name
    when it says nothing; cut at `limit` characters. The one way imgcls quotes a library's error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return _cut(lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0], limit)


def quoted(value: object, limit: int = 60) -> str:
    """A value read from a file (a checkpoint's or an exported file's field) as a message shows it: JSON
    (what JSON cannot hold, such as a tensor in a checkpoint, as its text), cut at `limit` characters."""
    return _cut(json.dumps(value, default=str), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ImgclsError(Exception):
    """Base class: a user-facing error whose message names the file or key and the fix."""


class ConfigError(ImgclsError, ValueError):
    """A bad model name, flag or option value."""


class DataError(ImgclsError):
    """A missing folder, an unreadable image, an empty class. The message is `reason` (what is wrong)
    and, after "; ", `advice` (what to do, in the flags of the commands that read data folders), so a
    command that handles the file its own way (export skips it) can quote the reason alone."""

    def __init__(self, reason: str, advice: str = "") -> None:
        super().__init__(f"{reason}; {advice}" if advice else reason)
        self.reason, self.advice = reason, advice


class WeightsError(ImgclsError):
    """A weight file that does not fit the model."""


class CheckpointError(ImgclsError):
    """A checkpoint that is missing, corrupt, or for another model."""


class ExportError(ImgclsError):
    """An export that failed its check: ONNX Runtime disagrees with PyTorch, or int8 with fp32."""


class TrainingError(ImgclsError):
    """A run that cannot go on: the loss became NaN or infinite."""
