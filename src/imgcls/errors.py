"""One exception type per family of user mistakes; the CLI prints them on one line and exits 2."""
from __future__ import annotations


class ImgclsError(Exception):
    """Base class: a user-facing error whose message names the file or key and the fix."""


class ConfigError(ImgclsError, ValueError):
    """A bad model name, flag or option value."""


class DataError(ImgclsError):
    """A missing folder, an unreadable image, an empty class."""


class WeightsError(ImgclsError):
    """A weight file that does not fit the model."""


class CheckpointError(ImgclsError):
    """A checkpoint that is missing, corrupt, or for another model."""


class TrainingError(ImgclsError):
    """A run that cannot go on: the loss became NaN or infinite."""
