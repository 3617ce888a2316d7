"""Plain data (TOML / JSON) <-> nested typed dataclass configs, refusing unknown keys.

``from_plain(cls, data, path)`` builds ``cls`` from a mapping: nested dataclass fields from
sub-tables, tuple fields from lists, dict fields from tables; an unknown key raises
``ValueError`` naming its full dotted path (``curation.nms.iou``). Scalars are checked against
the field's annotation first (:func:`check_scalar`: ``bool`` is not an ``int``, ``1.5`` is not
an ``int``, an ``int`` is a fine ``float``), then validated by each dataclass's own
``__post_init__``; a class with a ``__from_plain__(data, path)`` classmethod builds itself.
``to_plain`` is the inverse (tuples become lists).
"""

from __future__ import annotations

import dataclasses
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
            values[name] = tuple(value)
        elif typing.get_origin(hint) is dict:
            if not isinstance(value, Mapping):
                raise ValueError(f"{dotted(name)} must be a table, got {value!r}")
            values[name] = dict(value)
        else:
            values[name] = check_scalar(hint, value, dotted(name))
    try:
        return cls(**values)
    except TypeError as exc:  # a wrongly typed value tripping a comparison in __post_init__
        raise ValueError(f"{path or 'config'}: {exc}") from None


_SCALARS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def check_scalar(hint: Any, value: Any, dotted: str) -> Any:
    """``value`` when it fits the annotation ``hint`` (``int``, ``float``, ``bool``, ``str`` or a
    union of them with ``None``; other annotations are left to the dataclass), else
    ``ValueError`` naming ``dotted``. An int given for a float field becomes a float."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    scalars = [t for t in options if t in _SCALARS]
    if not scalars or len(scalars) + (type(None) in options) != len(options):
        return value
    if value is None and type(None) in options:
        return value
    for kind in scalars:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if isinstance(value, int) else value
        if kind is str and isinstance(value, str):
            return value
    wanted = " or ".join(_SCALARS[t] for t in scalars) + (" (or left out)" if type(None) in options else "")
    raise ValueError(f"{dotted} must be {wanted}, got {value!r}")


def to_plain(value: Any) -> Any:
    """Dicts, lists and scalars only (tuples become lists), e.g. of ``dataclasses.asdict``."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
