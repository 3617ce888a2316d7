"""Typed reads of one field of an imported file: each value checked before it is used.

Every reader takes the value and its dotted ``field`` name (``annotations[0].result[3].value.x``)
and returns it typed, or raises :class:`FieldError` whose message names the field, what it must
be and what it is. JSON ``true``/``false`` are not numbers here, NaN and infinities are not
numbers either, and a number written as a string is not a number.
"""

from __future__ import annotations

import math
from typing import Any

_SHOWN = 40  # characters of a bad value quoted in a message


class FieldError(ValueError):
    """One field of an imported file holds what it must not (``field``: its dotted name)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def describe(value: Any) -> str:
    """A short words-form of a bad value for a message (``null``, ``NaN``, ``a string '12'`` ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return f"a string {value[:_SHOWN]!r}" + ("..." if len(value) > _SHOWN else "")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, f"must be an object, got {describe(value)}")
    return value


def items(value: Any, field: str, optional: bool = False, most: int | None = None) -> list[Any]:
    """A list (``optional``: null or missing read as ``[]``) of at most ``most`` entries."""
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise FieldError(field, f"must be a list, got {describe(value)}")
    if most is not None and len(value) > most:
        raise FieldError(field, f"holds {len(value):,} entries, more than the {most:,} allowed")
    return value


def text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {describe(value)}")
    return value


def texts(value: Any, field: str) -> list[str]:
    """A list of strings (null or missing: ``[]``)."""
    return [text(v, f"{field}[{i}]") for i, v in enumerate(items(value, field, optional=True))]


def number(value: Any, field: str) -> float:
    """A finite JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(field, f"must be a finite number, got {describe(value)}")
    return float(value)


def whole(value: Any, field: str, minimum: int = 0) -> int:
    """A JSON integer >= ``minimum`` (``2.7``, ``2.0`` and ``"2"`` are not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FieldError(field, f"must be a whole number >= {minimum}, got {describe(value)}")
    return value


def flag(value: Any, field: str) -> bool:
    """``true``/``false`` (null or missing: false)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FieldError(field, f"must be true or false, got {describe(value)}")
    return value


def percent(value: Any, field: str, low: float, high: float, tolerance: float) -> float:
    """A finite number in ``[low - tolerance, high + tolerance]``, clipped to ``[low, high]``."""
    number_ = number(value, field)
    if not low - tolerance <= number_ <= high + tolerance:
        raise FieldError(field, f"must be in {low:g}..{high:g} (percent of the image), got {number_:g}")
    return min(max(number_, low), high)
