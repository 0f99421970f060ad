"""Options as people write them in YAML, read by the type of the dataclass field they set.

YAML 1.1 (PyYAML) reads ``1e-3`` and ``1_000.5`` as text and ``on``/``off``/``yes``/``no`` as
booleans. :func:`parse_fields` turns each value into its field's type (numbers in any spelling,
booleans for switches, ``on``/``off`` for text switches such as ``tensorboard``) or raises one
``ValueError`` line naming the option, the value and what was expected.
"""

from __future__ import annotations

import difflib
import math
import typing
from typing import Any, Union

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class _Mismatch(Exception):
    pass


def reject_unknown(values: dict, known, message: str) -> None:
    """Raise ``ValueError(message)`` for the first key of ``values`` not in ``known``; ``message``
    is formatted with ``key`` and ``hint`` (a close match, if any)."""
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(message.format(key=key, hint=hint))


def parse_fields(cls, values: dict, prefix: str = "") -> dict:
    """``values`` with each known key converted to the type of ``cls``'s field of that name."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in hints:
            out[key] = value
            continue
        try:
            out[key] = _convert(value, hints[key])
        except _Mismatch:
            raise ValueError(f"{prefix}{key}: {value!r} is not {_describe(hints[key])}") from None
    return out


def _describe(kind) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:
        names = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" (or null)" if type(None) in args else "")
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('a ')}" if args else "a list"
    if origin is dict:
        return "a mapping of options"
    return {bool: "a boolean (true/false, on/off)", int: "a whole number (e.g. 100 or 1_000)",
            float: "a number (e.g. 0.001, 1e-3 or 1_000)", str: "text"}.get(kind, str(kind))


def _convert(value, kind):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for alternative in args:
            if alternative is type(None):
                continue
            try:
                return _convert(value, alternative)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in (list, tuple):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise _Mismatch
        return [_convert(item, args[0]) if args else item for item in items]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return {key: _convert(item, args[1]) if args else item for key, item in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Mismatch
    if kind is int:
        number = _number(value)
        if not number.is_integer():
            raise _Mismatch
        return int(number)
    if kind is float:
        return _number(value)
    if kind is str:
        if isinstance(value, bool):  # YAML's on/off: text switches (tensorboard: off)
            return "on" if value else "off"
        if not isinstance(value, str):
            raise _Mismatch
        return value
    return value


def _number(value) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace("_", ""))
        except ValueError:
            raise _Mismatch from None
    else:
        raise _Mismatch
    if math.isnan(number):
        raise _Mismatch
    return number
