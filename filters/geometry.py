"""Geometry sanity of boxes and OCR quads, and the image-known rule.

``image``: every row whose ``image_id`` is not an ingested image with status ``ok`` is
dropped (its size is unknown, so nothing about its geometry can be trusted).

``geometry`` judges rows that carry a ``bbox`` or a ``quad`` (pixels of the upright image):
quads must be finite, non-degenerate (``|shoelace area| >= min_quad_area``) and, optionally,
convex; they are clipped to the image and a missing ``bbox`` is filled with the quad's
bounds. Boxes must be finite and non-inverted (``x1 > x0``, ``y1 > y0``); they are clipped to
the image (``clip``), must keep ``min_inside_fraction`` of their area inside it, and after
clipping need ``min(w, h) >= min_side``, ``w * h >= min_area`` and
``max(w / h, h / w) <= max_aspect_ratio``. Kept rows get the clipped geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from filters.base import (
    FilterContext,
    FilterResult,
    image_index,
    reason_from_codes,
    reason_where,
    register_filter,
    to_numpy,
    valid,
)
from filters.kernels import (
    BOX_ELONGATED,
    BOX_INVERTED,
    BOX_NON_FINITE,
    BOX_OUTSIDE,
    BOX_SMALL,
    BOX_THIN,
    check_boxes,
)
from storage import geometry as geo


@dataclass(frozen=True)
class GeometryConfig:
    clip: bool = True
    min_side: float = 2.0  # pixels, after clipping
    min_area: float = 16.0  # square pixels, after clipping
    max_aspect_ratio: float = 20.0
    min_inside_fraction: float = 0.5  # of the unclipped box area
    min_quad_area: float = 4.0  # square pixels
    require_convex_quads: bool = True

    def __post_init__(self) -> None:
        for name in ("min_side", "min_area", "min_quad_area"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"geometry.{name} must be a number >= 0, got {value!r}")
        if not (isinstance(self.max_aspect_ratio, (int, float)) and self.max_aspect_ratio >= 1):
            raise ValueError(f"geometry.max_aspect_ratio must be >= 1, got {self.max_aspect_ratio!r}")
        if not (isinstance(self.min_inside_fraction, (int, float)) and 0 <= self.min_inside_fraction <= 1):
            raise ValueError(f"geometry.min_inside_fraction must be in [0, 1], got {self.min_inside_fraction!r}")
        for name in ("clip", "require_convex_quads"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"geometry.{name} must be true or false, got {getattr(self, name)!r}")


def image_sizes(table: pa.Table, images: pa.Table | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(known, width, height) per row of ``table`` looked up in ``images`` by ``image_id``."""
    n = table.num_rows
    if images is None or images.num_rows == 0 or n == 0:
        return np.zeros(n, bool), np.zeros(n), np.zeros(n)
    idx = image_index(table, images)
    known = idx >= 0
    width = to_numpy(images["width"], 0).astype(np.float64)[np.maximum(idx, 0)]
    height = to_numpy(images["height"], 0).astype(np.float64)[np.maximum(idx, 0)]
    return known & (width > 0) & (height > 0), width, height


@register_filter("image", section="geometry", settings=GeometryConfig, working_form=True)
def image_filter(table: pa.Table, config: GeometryConfig, ctx: FilterContext) -> FilterResult:
    """Drop rows of images that are not ingested with status ``ok`` (size unknown)."""
    known, _, _ = image_sizes(table, ctx.images)
    return FilterResult(keep=known, reason=reason_where(~known, "image not ingested with status ok"))


def _quad_checks(quads: np.ndarray, config: GeometryConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(non-finite, degenerate, bent) masks of ``(k, 8)`` quads, each excluding the earlier ones."""
    bad_value = ~np.isfinite(quads).all(axis=1)
    small = ~bad_value & ~(np.abs(geo.quad_area(quads)) >= config.min_quad_area)
    bent = ~(bad_value | small) & config.require_convex_quads & ~geo.quad_is_convex(quads)
    return bad_value, small, bent


@register_filter("geometry", settings=GeometryConfig, working_form=True)
def geometry_filter(table: pa.Table, config: GeometryConfig, ctx: FilterContext) -> FilterResult:
    """Clip boxes/quads to the image and drop degenerate, tiny, thin or outside ones.

    Quads are decoded and checked on the quad rows only; ``bbox``/``quad`` are replaced only
    when clipping or filling changed a value."""
    n = table.num_rows
    known, width, height = image_sizes(table, ctx.images)
    has_box, has_quad = valid(table["bbox"]), valid(table["quad"])
    judged = has_box | has_quad
    boxes = geo.boxes_from_arrow(table["bbox"])
    w_lim = np.where(known, width, np.inf)  # unknown size: no clipping (the image rule drops them)
    h_lim = np.where(known, height, np.inf)
    checks: list[tuple[np.ndarray, str]] = []  # lowest priority first: the last failing check names the reason
    replace = {}
    fill = np.zeros(0, np.int64)  # boxes filled from their quad
    q = np.flatnonzero(has_quad)
    if len(q):
        quads = geo.quads_from_arrow(table["quad"].take(pa.array(q)))
        masks = [np.zeros(n, bool) for _ in range(3)]
        for full, part in zip(masks, _quad_checks(quads, config)):
            full[q] = part
        if config.clip:
            clipped = geo.clip_quads(quads, w_lim[q], h_lim[q])
            if not np.array_equal(clipped, quads, equal_nan=True):
                all_quads = geo.quads_from_arrow(table["quad"])
                all_quads[q] = clipped
                replace["quad"] = geo.quads_to_arrow(all_quads)
            quads = clipped
        fill = q[~valid(table["bbox"].take(pa.array(q)))]
        if len(fill):
            boxes[fill] = geo.quad_bounds(quads[np.searchsorted(q, fill)])
        checks += [(masks[2], "quad not convex"),
                   (masks[1], f"degenerate quad (area below {config.min_quad_area} px^2)"),
                   (masks[0], "non-finite quad")]
        has_box = has_box | has_quad
    code = np.empty(n, np.int8)  # the first failing box check (kernels.BOX_*), 0 = passed
    clipped = np.empty(n, bool)
    check_boxes(boxes, has_box, w_lim, h_lim, config.clip, float(config.min_side), float(config.min_area),
                float(config.max_aspect_ratio), float(config.min_inside_fraction), code, clipped)
    if len(fill):
        replace["bbox"] = geo.boxes_to_arrow(boxes)
    elif clipped.any():
        replace["bbox"] = geo.with_boxes_replaced(table["bbox"], boxes, np.flatnonzero(clipped))
    texts = {
        BOX_NON_FINITE: "non-finite box",
        BOX_INVERTED: "inverted box (x1 <= x0 or y1 <= y0)",
        BOX_OUTSIDE: f"less than {config.min_inside_fraction} of the box inside the image",
        BOX_THIN: f"side below {config.min_side} px",
        BOX_SMALL: f"area below {config.min_area} px^2",
        BOX_ELONGATED: f"aspect ratio above {config.max_aspect_ratio}",
    }
    for mask, text in checks:  # quad checks outrank the box checks
        code[mask] = len(texts) + 1
        texts[len(texts) + 1] = text
    drop = code > 0
    return FilterResult(keep=~drop, reason=reason_from_codes(code, texts), judged=judged, replace=replace)
