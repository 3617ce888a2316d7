"""Plain data (TOML / JSON) <-> nested typed dataclass configs, refusing unknown keys.

``from_plain(cls, data, path)`` builds ``cls`` from a mapping: nested dataclass fields from
sub-tables, tuple fields from lists, dict fields from tables; an unknown key raises
``ValueError`` naming its full dotted path (``curation.nms.iou``). Scalars, the items of a
``tuple[X, ...]`` and the values of a ``dict[str, X]`` are checked against the annotation first
(:func:`check_scalar`: ``bool`` is not an ``int``, ``1.5`` is not an ``int``, an ``int`` is a
fine ``float``, a float is finite, an int fits 64 bits), then validated by each dataclass's own
``__post_init__``, whose message is given the field's full dotted path (a section's class
names its keys from its own table: ``merge.iou`` under ``curation`` becomes
``curation.merge.iou``); a class with a ``__from_plain__(data, path)`` classmethod builds itself.
:func:`check_int_range` is the one integer range check of the sections. ``to_plain`` is the
inverse (tuples become lists).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping


def from_plain(cls: type, data: Mapping[str, Any], path: str) -> Any:
    """An instance of dataclass ``cls`` from ``data``; ``path`` (may be empty) prefixes key names in errors."""
    if hasattr(cls, "__from_plain__"):  # a config that builds itself (e.g. from a registry)
        return cls.__from_plain__(data, path)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    dotted = (lambda key: f"{path}.{key}") if path else str  # noqa: E731
    if unknown := sorted(set(data) - names):
        raise ValueError(f"unknown key(s) {', '.join(dotted(k) for k in unknown)}; known: {sorted(names)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ValueError(f"{dotted(name)} must be a table of settings, got {value!r}")
            values[name] = from_plain(hint, dict(value), dotted(name))
        elif typing.get_origin(hint) is tuple:
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ValueError(f"{dotted(name)} must be a list, got {value!r}")
            item = typing.get_args(hint)[0] if typing.get_args(hint)[1:] == (Ellipsis,) else Any
            values[name] = tuple(check_scalar(item, v, f"{dotted(name)}[{i}]", of=value) for i, v in enumerate(value))
        elif typing.get_origin(hint) is dict:
            if not isinstance(value, Mapping):
                raise ValueError(f"{dotted(name)} must be a table, got {value!r}")
            item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
            values[name] = {k: check_scalar(item, v, f"{dotted(name)}.{k}") for k, v in value.items()}
        else:
            values[name] = check_scalar(hint, value, dotted(name))
    try:
        return cls(**values)
    except TypeError as exc:  # a wrongly typed value tripping a comparison in __post_init__
        raise ValueError(f"{path or 'config'}: {exc}") from None
    except ValueError as exc:
        raise ValueError(qualified(str(exc), path)) from None


def qualified(message: str, path: str) -> str:
    """``message`` of the dataclass at ``path`` with the key it starts with named in full: a
    section's class names its keys from its own table (``merge.iou must ...``), so under
    ``curation.merge`` the message becomes ``curation.merge.iou must ...``; a message naming no key
    of ``path`` is prefixed with it (``curation.merge: ...``)."""
    if not path:
        return message
    parts = path.split(".")
    for start in range(len(parts)):
        tail = ".".join(parts[start:])
        if message.startswith(tail) and message[len(tail):len(tail) + 1] in (".", " ", "[", ":", ""):
            return ".".join(parts[:start] + [message])
    return f"{path}: {message}"


_SCALARS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
#: the integers a config may hold: TOML's own 64-bit range (Python's ``tomllib`` reads any length)
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1


def _fits(kind: type, value: Any) -> bool:
    if kind is bool or kind is str:
        return isinstance(value, kind)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind is int:
        return isinstance(value, int) and INT_MIN <= value <= INT_MAX
    return math.isfinite(value) if isinstance(value, float) else INT_MIN <= value <= INT_MAX


def check_scalar(hint: Any, value: Any, dotted: str, of: Any = None) -> Any:
    """``value`` when it fits the annotation ``hint`` (``int``, ``float``, ``bool``, ``str`` or a
    union of them with ``None``; other annotations are left to the dataclass), else
    ``ValueError`` naming ``dotted`` (and the whole list ``of`` an item, when given). An int given
    for a float field becomes a float; nan and inf are never a number, and an integer must fit
    64 bits."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    scalars = [t for t in options if t in _SCALARS]
    if not scalars or len(scalars) + (type(None) in options) != len(options):
        return value
    if value is None and type(None) in options:
        return value
    for kind in scalars:
        if _fits(kind, value):
            return float(value) if kind is float and isinstance(value, int) else value
    wanted = " or ".join(_SCALARS[t] for t in scalars) + (" (or left out)" if type(None) in options else "")
    if int in scalars and isinstance(value, int) and not isinstance(value, bool):
        wanted += f" between {INT_MIN} and {INT_MAX}"
    elif float in scalars and isinstance(value, float):
        wanted = wanted.replace(_SCALARS[float], "a finite number (not nan or inf)")
    whole = f" (in {list(of)!r})" if of is not None else ""
    raise ValueError(f"{dotted} must be {wanted}, got {value!r}{whole}")


def check_int_range(dotted: str, value: Any, low: int, high: int = INT_MAX) -> None:
    """``value`` must be a whole number (not a bool) with ``low <= value <= high``; else a
    ``ValueError`` naming ``dotted``, the value and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        allowed = f">= {low}" if high == INT_MAX else f"between {low} and {high}"
        raise ValueError(f"{dotted} must be a whole number {allowed}, got {value!r}")


def to_plain(value: Any) -> Any:
    """Dicts, lists and scalars only (tuples become lists), e.g. of ``dataclasses.asdict``."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
