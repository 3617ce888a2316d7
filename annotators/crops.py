"""Boxes and points kept inside the image, and regions cropped out of it with a margin.

Boxes are ``[x0, y0, x1, y1]`` in absolute pixels of the upright image (origin top-left,
x right, y down), as in every annotation row.
"""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image


def crop_box(bbox: Sequence[float], width: int, height: int, margin: float = 0.1) -> tuple[int, int, int, int]:
    """The integer pixel box ``(left, top, right, bottom)`` that :func:`crop_region` cuts.

    The box grows by ``margin`` times its own width (left and right) and height (top and
    bottom), is rounded outwards to whole pixels, clamped to ``[0, width] x [0, height]``
    and made at least 1 pixel wide and high (still inside the image). Raises ``ValueError``
    for a negative margin, a box that is not 4 finite numbers, or an empty image.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite fraction >= 0, got {margin!r}")
    if width < 1 or height < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {width}x{height}")
    if len(bbox) != 4 or not all(math.isfinite(float(v)) for v in bbox):
        raise ValueError(f"bbox must be 4 finite numbers x0, y0, x1, y1; got {list(bbox)!r}")
    x0, y0, x1, y1 = (float(v) for v in bbox)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    left = _clamp(math.floor(x0 - dx), 0, width - 1)
    top = _clamp(math.floor(y0 - dy), 0, height - 1)
    right = _clamp(math.ceil(x1 + dx), left + 1, width)
    bottom = _clamp(math.ceil(y1 + dy), top + 1, height)
    return left, top, right, bottom


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def crop_region(image: Image.Image, bbox: Sequence[float], margin: float = 0.1) -> Image.Image:
    """Cut ``bbox`` (absolute pixels) plus ``margin`` (a fraction of the box size per side).

    The crop is clamped to the image and at least 1x1 pixel; see :func:`crop_box`.
    """
    return image.crop(crop_box(bbox, image.width, image.height, margin))
