"""Flags from options dataclasses (imgcls.options): one flag per field, with the field's help, range,
choices and default, checked while parsing so a bad value is refused with the sub-command's usage."""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from imgcls.errors import ImgclsError
from imgcls.options import check_item, check_value, flag_of, option_fields


def parse_model_kw(text: str) -> dict:
    """One `--model-kw`: KEY=VALUE (VALUE read as JSON when it can be: true, 3, 0.2, null; else a
    string) or a JSON object of several."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object ({e})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
        return value
    key, eq, raw = text.partition("=")
    if not eq or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. stride_in_1x1=true")
    try:
        return {key: json.loads({"True": "true", "False": "false", "None": "null"}.get(raw, raw))}
    except ValueError:
        return {key: raw}


class MergeKw(argparse.Action):
    """Repeated `--model-kw` values merge into one dict (a later key wins)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, {**(current if isinstance(current, dict) else {}), **values})


def _help(text: str, default: Any, shown: bool) -> str:
    """The field's help with its default when `shown`, unless the help already says what a None default means."""
    if not shown or (default is None and "default" in text):
        return text
    return f"{text} (default: {str(default).replace('%', '%%')})"


def add_option_flags(p: argparse.ArgumentParser, klass: type, *, title: str | None = None,
                     suppress_defaults: bool = False) -> None:
    """One flag per field of an options dataclass (imgcls.options): its help, range and default come
    from the field. With `suppress_defaults` a flag not given leaves no attribute, so that only the
    flags a user gives override a --config file (train)."""
    g = p.add_argument_group(title) if title else p
    exclusive: dict[str, Any] = {}  # name -> its mutually exclusive group
    for f, typ in option_fields(klass):
        meta = dict(f.metadata)
        help_text, kind = meta.pop("help", "").replace("%", "%%"), meta.pop("cli", None)  # argparse formats help
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if kind == "positional":
            g.add_argument(f.name, nargs="?", default=argparse.SUPPRESS if suppress_defaults else default,
                           help=help_text)
            continue
        flag = flag_of(f)
        names = [meta["short"], flag] if "short" in meta else [flag]
        required = meta.get("required", False)
        kw: dict = {"default": argparse.SUPPRESS if suppress_defaults else default, "dest": f.name,
                    "help": _help(help_text, default, shown=not required and kind != "switch")}
        if required:
            kw["required"] = True
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        if kind == "switch":  # an action or an output format: only ever turned on
            kw["action"] = "store_true"
        elif bool in (typ, *getattr(typ, "__args__", ())):  # bool, or bool | None (None: decided later)
            kw["action"] = argparse.BooleanOptionalAction
        elif kind == "model_kw":  # --model-kw KEY=VALUE, repeatable; --model-kwargs JSON is the same flag
            kw.update(type=parse_model_kw, metavar="KEY=VALUE", action=MergeKw)
            names = list(dict.fromkeys(["--model-kw", flag]))
        elif "nargs" in meta:
            kw.update(nargs=meta["nargs"], type=_checked(flag, f, meta["type"], each=True))
        else:
            kw["type"] = _checked(flag, f, typ)
            if "choices" in meta:
                kw["choices"] = meta["choices"]
        if "exclusive" in meta and meta["exclusive"] not in exclusive:
            exclusive[meta["exclusive"]] = g.add_mutually_exclusive_group()
        exclusive.get(meta.get("exclusive"), g).add_argument(*names, **kw)


def options_of(args: argparse.Namespace, klass: type) -> Any:
    """The options dataclass `klass` filled from the parsed flags."""
    return klass(**{f.name: getattr(args, f.name) for f in dataclasses.fields(klass)})


def _checked(flag: str, f: dataclasses.Field, typ: type, *, each: bool = False):
    """An argparse type that parses a config field's value and checks its range, so a bad value is
    refused while parsing, with the sub-command's usage: "--batch-size 0: must be >= 1"."""
    base = next((a for a in getattr(typ, "__args__", ()) if a is not type(None)), typ)

    def parse(text: str):
        if text in f.metadata.get("words", ()):
            return text
        try:
            value = base(text)
        except ValueError:
            words = "".join(f" or {w}" for w in f.metadata.get("words", ()))
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if base is int else 'a number'}{words}") \
                from None
        try:
            return check_item(value, f.metadata, base) if each else check_value(flag, value, f, typ)
        except ImgclsError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag} ")) from None

    parse.__name__ = base.__name__
    return parse
