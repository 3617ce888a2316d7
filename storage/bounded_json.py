"""A user's JSON file read within bounds: its size and its nesting depth checked before parsing.

Python's ``json`` module recurses once per nested array or object, so a 200,000-deep file
fails deep inside the decoder (``RecursionError``) and a huge one is read whole. Here the
file's size is checked first (``max_bytes``, from its stat and again while reading), then its
depth (``max_depth``: the most arrays/objects open at once) is counted outside strings by
linear C-speed passes (escape pairs removed, then string bodies, then everything but
brackets; the remaining brackets summed in numpy chunks), and only then is it parsed. A file
that is not UTF-8 is refused (JSON files are; this also makes every byte below 0x80 a
character of its own, which the passes rely on). Every refusal is one :class:`JsonBoundsError`
line naming the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

_ESCAPE = re.compile(rb"\\.", re.S)  # inside strings: a backslash and the character it escapes
_STRING = re.compile(rb'"[^"]*"')  # with escapes gone, no quote is left inside a string
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_CHUNK = 1 << 23  # brackets summed per numpy pass


class JsonBoundsError(ValueError):
    """A JSON file too large, nested too deep, not UTF-8 or not JSON (one line naming the file)."""


def nesting_depth(data: bytes) -> int:
    """The most arrays and objects open at once in UTF-8 JSON ``data`` (brackets inside strings not
    counted). Linear in ``len(data)``; on invalid JSON it is a bound, not an error."""
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data)).translate(None, _NOT_BRACKET)
    deepest, depth = 0, 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, dtype=np.uint8, count=min(_CHUNK, len(brackets) - start), offset=start)
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int64)
        running = np.cumsum(steps) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def load_json(path: Path | str, max_bytes: int, max_depth: int) -> tuple[bytes, Any]:
    """``(the file's bytes, its parsed value)``; raises :class:`JsonBoundsError` (one line) when the
    file is larger than ``max_bytes``, nested deeper than ``max_depth``, not UTF-8 or not JSON, and
    ``OSError`` when it cannot be read. ``NaN``/``Infinity`` literals parse as Python does (floats):
    the caller checks each value it reads."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise JsonBoundsError(f"{path} is {size:,} bytes, more than the {max_bytes:,} a file read here may be")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we looked
        raise JsonBoundsError(f"{path} is more than the {max_bytes:,} bytes a file read here may be")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonBoundsError(f"{path} is not UTF-8 text (byte {exc.start}): JSON files are UTF-8") from None
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JsonBoundsError(f"{path} is nested {depth:,} levels deep, more than the {max_depth} its format "
                              "has: it is not the file expected")
    try:
        return data, json.loads(text)
    except RecursionError:  # cannot happen below max_depth; kept so no input can escape as a traceback
        raise JsonBoundsError(f"{path} is nested too deep to parse") from None
    except ValueError as exc:
        raise JsonBoundsError(f"{path} is not JSON ({exc})") from None
