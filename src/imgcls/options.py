"""Options as dataclass fields: one definition gives the Python default, the command-line flag, its help
and its allowed range, so the CLI, a config file and the Python API are checked by the same rule.

    batch_size: int = option(32, "images per step", ge=1)      # --batch-size, refused below 1

Metadata keys: `help`; `ge`/`gt`/`le`/`lt` bounds; `choices`; `nargs` + `type` for a fixed-length
list; `cli` for a flag of another shape ("positional", "model_kw", or "switch": a bool only ever
turned on, `--json` without `--no-json`); `flag` for a flag whose name is not the field's (`--output`
for `out_dir`), `short` for a one-letter alias, `metavar` for the value's name in the usage,
`required` for a flag that must be given, `exclusive` for a name the fields of one mutually
exclusive group share, `words` for the words a number field also takes (`--lr find`). Options that
several commands share are defined once below (`draft_option`, `device_option`, `workers_option`,
`threads_option`).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from imgcls.errors import ConfigError


def option(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its help and rules (see the module docstring)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def draft_option() -> Any:
    return option(False, "decode big JPEGs reduced (JPEG draft mode): faster, pixels differ slightly from "
                         "torchvision's")


def images_option() -> Any:
    return option(None, "with a CSV file of labels as DATA: the folder its relative paths start at (default: the "
                        "CSV's folder)", metavar="DIR")


def path_col_option() -> Any:
    return option(None, "with a CSV file of labels: the column of image paths (default: found by name: path, file, "
                        "filename, image ...)", metavar="NAME")


def label_col_option() -> Any:
    return option(None, "with a CSV file of labels: the column of labels (default: found by name: label, class, "
                        "category ...)", metavar="NAME")


def label_sep_option() -> Any:
    return option(None, "with a CSV file of labels: the character between the labels of a cell with several labels "
                        "per photo (e.g. ';'): a multi-label set (docs/data.md)", metavar="CHAR")


def device_option() -> Any:
    return option("auto", "auto | cpu | cuda | cuda:N | mps")


def workers_option() -> Any:
    return option(None, "data-loading worker processes (default: one per core, at most 8; 0 = none)", ge=0)


def threads_option() -> Any:
    return option(None, "ONNX Runtime threads for an .onnx model (default: as many as torch uses)", ge=1)


def option_fields(klass: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of every field of an options dataclass."""
    hints = typing.get_type_hints(klass)
    return [(f, hints[f.name]) for f in dataclasses.fields(klass)]


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or flag_name(f.name)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _bounds_error(value: float, meta: Mapping[str, Any]) -> str | None:
    checks = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"))
    for key, ok, sign in checks:
        if key in meta and not ok(value, meta[key]):
            return f"must be {sign} {meta[key]}"
    return None


def _number(value: Any, want: type) -> int | float:
    """`value` as an int or a finite float; ValueError with what is allowed otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be an integer" if want is int else "must be a number")
    if want is int:
        if not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _checked_number(value: Any, meta: Mapping[str, Any], want: type) -> int | float:
    value = _number(value, want)
    why = _bounds_error(value, meta)
    if why:
        raise ValueError(why)
    return value


def check_item(value: Any, meta: Mapping[str, Any], want: type) -> int | float:
    """One number of a field (one of --scale's two, say) checked against the field's range;
    ConfigError "<value>: <what is allowed>"."""
    try:
        return _checked_number(value, meta, want)
    except ValueError as e:
        raise ConfigError(f"{value!r}: {e}") from None


def check_value(label: str, value: Any, f: dataclasses.Field, typ: Any) -> Any:
    """`value` converted to the field's type (an int for a float field becomes a float) or a one-line
    ConfigError: "<label> <value>: <what is allowed>". `label` is a flag (--lr) or file and key."""
    meta = f.metadata
    if isinstance(value, str) and value in meta.get("words", ()):  # a word the field takes besides numbers
        return value
    args = getattr(typ, "__args__", ())
    if args:  # X | None
        if value is None:
            return None
        typ = next(a for a in args if a is not type(None))
    try:
        if typ is bool:
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
        elif typ in (int, float):
            value = _checked_number(value, meta, typ)
        elif typ is str:
            if not isinstance(value, str):
                raise ValueError("must be a string")
            if "choices" in meta and value not in meta["choices"]:
                raise ValueError(f"must be one of {', '.join(meta['choices'])}")
        elif typ is list:
            n = meta["nargs"]
            if not isinstance(value, (list, tuple)) or len(value) != n:
                raise ValueError(f"must be a list of {n} numbers")
            value = [_checked_number(v, meta, meta["type"]) for v in value]
        elif typ is dict:
            if not isinstance(value, dict):
                raise ValueError("must be a mapping, e.g. {\"zero_init_residual\": true}")
    except ValueError as e:
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        raise ConfigError(f"{label} {shown!r}: {e}") from None
    return value
