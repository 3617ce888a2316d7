"""Shared settings of model-backed annotators, the small validators every settings class uses,
and :func:`settings_from_kwargs`, which builds a settings dataclass from an annotator's kwargs.

Every check raises ``ValueError`` whose message starts with the setting's name and ends with
the bad value (``"threshold must be a number in [0, 1], got 1.5"``), so a config error points
at the key to fix. ``bool`` is never accepted where a number is asked for (TOML ``true`` is not 1).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Collection, Mapping, TypeVar

S = TypeVar("S")

#: accepted ``dtype`` settings -> torch dtype names
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


def check_int(name: str, value: Any, low: int = 1) -> None:
    """``value`` must be an ``int`` (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """``value`` must be an ``int`` (not a bool) ``>= 1`` (counts, batch sizes, token budgets)."""
    check_int(name, value, 1)


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 unit: str = "") -> None:
    """``value`` must be a finite int or float (not a bool, never nan or inf) inside ``[low, high]``
    (``None``: unbounded).

    ``unit`` is added to the message after the range, e.g. ``" (pixels)"``.
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and low is not None:
        ok = float(value) >= low
    if ok and high is not None:
        ok = float(value) <= high
    if not ok:
        if low is not None and high is not None:
            bound = f" in [{low:g}, {high:g}]"
        elif low is not None:
            bound = f" >= {low:g}"
        elif high is not None:
            bound = f" <= {high:g}"
        else:
            bound = ""
        raise ValueError(f"{name} must be a number{bound}{unit}, got {value!r}")


def check_range(name: str, value: Any, low: float, high: float, unit: str = "") -> None:
    """``value`` must be a number (not a bool) with ``low <= value <= high``."""
    check_number(name, value, low, high, unit)


def check_bool(name: str, value: Any) -> None:
    """``value`` must be ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_str(name: str, value: Any) -> None:
    """``value`` must be a string (possibly empty)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")


def str_tuple(name: str, value: Any, what: str = "source names") -> tuple[str, ...]:
    """``value`` (a list or tuple of strings, not one string) as a tuple; ``what`` names the items."""
    if isinstance(value, str) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"{name} must be a list of {what}, got {value!r}")
    return tuple(value)


def subset_tuple(name: str, value: Any, allowed: Collection[str]) -> tuple[str, ...]:
    """``tuple(value)``, which must be non-empty and hold only members of ``allowed``."""
    chosen = tuple(value)
    if not chosen or any(v not in allowed for v in chosen):
        raise ValueError(f"{name} must be a non-empty subset of {tuple(allowed)}, got {chosen!r}")
    return chosen


@dataclass(frozen=True)
class ModelSettings:
    """Settings every model-backed annotator has; its own settings class extends this one.

    ``model``: checkpoint directory or a hub id already in the local cache (see
    :func:`hf.loading.resolve_model_dir`). ``device``: cpu, cuda, cuda:N or auto
    (checked further by :func:`hf.loading.torch_device_dtype`). ``dtype``: fp32,
    bf16 or fp16 (aliases float32, bfloat16, float16). ``batch_size``: inputs per forward pass
    (>= 1; what one input is, an image, a crop or a prompt, the subclass says).
    ``allow_pickle_weights``: load a checkpoint that has only ``pytorch_model.bin`` weights (with
    torch's ``weights_only``; default false: safetensors only, see ``hf.checkpoint_check``).

    A subclass redeclares a field to change its default and calls ``super().__post_init__()``
    first in its own ``__post_init__``.
    """

    model: str | os.PathLike[str] = ""
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 8
    allow_pickle_weights: bool = False

    def __post_init__(self) -> None:
        check_bool("allow_pickle_weights", self.allow_pickle_weights)
        if not isinstance(self.model, (str, os.PathLike)):
            raise ValueError(f"model must be a path or hub id string, got {self.model!r}")
        check_str("device", self.device)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of fp32, bf16, fp16; got {self.dtype!r}")
        check_positive_int("batch_size", self.batch_size)


def settings_from_kwargs(cls: type[S], settings: Mapping[str, Any], annotator: str) -> S:
    """``cls(**settings)`` for the settings dataclass ``cls`` of the annotator ``annotator``.

    An unknown setting name, or a required one left out, raises ``ValueError`` naming it and
    listing the known settings (a plain ``cls(**settings)`` would raise ``TypeError``). Values
    are validated by ``cls.__post_init__``.
    """
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = [f.name for f in fields]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for annotator {annotator!r}; "
                         f"known: {', '.join(known)}")
    missing = [f.name for f in fields if f.name not in settings
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"annotator {annotator!r} needs the setting(s) {', '.join(missing)}")
    return cls(**settings)
