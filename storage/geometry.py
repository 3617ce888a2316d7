"""Vectorised box and quad geometry over numpy arrays (shared by filters, merge, evaluation).

Conventions: absolute pixels of the upright image, origin top-left, y down. A box is
``[x0, y0, x1, y1]`` (shape ``(n, 4)``), an OCR quad is ``[x0, y0, ..., x3, y3]`` clockwise
from the top-left corner (shape ``(n, 8)``). In Arrow they are ``list<float32>`` of 4 / 8 values (the schema's ``bbox`` and
``quad``); a null value becomes a row of NaN, and a row of NaN becomes null again on the
way back (:func:`boxes_to_arrow`).
All computations run in float64; areas are in square pixels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.arrow_masks import valid_mask


def _chunk_into(chunk: pa.Array, out: np.ndarray) -> None:
    """Write one list chunk into ``out`` (``(len, width)`` float64); nulls and rows of another
    length -> NaN.

    Reads the list offsets and the flat child values directly (no per-row filtering, no
    intermediate copies): a chunk whose rows all hold ``width`` values is one strided copy."""
    n, width = out.shape
    if isinstance(chunk, pa.FixedSizeListArray) and chunk.type.list_size == width:  # one reshaped view
        out[:] = chunk.values.slice(chunk.offset * width, n * width).to_numpy(zero_copy_only=False).reshape(n, width)
        if chunk.null_count:
            out[~valid_mask(chunk)] = np.nan
        return
    if isinstance(chunk, pa.FixedSizeListArray) or not isinstance(chunk, (pa.ListArray, pa.LargeListArray)):
        out[:] = np.nan
        good = pc.fill_null(pc.equal(pc.list_value_length(chunk), width), False).to_numpy(zero_copy_only=False)
        if good.any():
            flat = pc.list_flatten(chunk.filter(pa.array(good))).to_numpy(zero_copy_only=False)
            out[good] = flat.reshape(-1, width)
        return
    offsets = chunk.offsets.to_numpy()
    values = chunk.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(offsets)
    if not chunk.null_count and (lengths == width).all():
        out[:] = values[offsets[0]:offsets[-1]].reshape(n, width)
        return
    good = lengths == width
    if chunk.null_count:
        good &= valid_mask(chunk)
    out[:] = np.nan
    out[good] = values[offsets[:-1][good].astype(np.int64)[:, None] + np.arange(width)]


def _list_to_numpy(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.empty((len(column), width), dtype=np.float64)
    start = 0
    for chunk in chunks:
        _chunk_into(chunk, out[start:start + len(chunk)])
        start += len(chunk)
    return out


def as_fixed_size(column: pa.Array | pa.ChunkedArray, width: int) -> pa.Array | pa.ChunkedArray:
    """A ``list<float>`` geometry column as ``fixed_size_list<float>[width]`` when every
    non-null row holds exactly ``width`` values (a take then moves no offsets and
    :func:`boxes_from_arrow` reads it as one view), else (also when all null) unchanged."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) or column.null_count == len(column):
        return column  # all null (quads without OCR): a fixed-size list would allocate ``width`` zeroed values a row
    lengths = pc.min_max(pc.list_value_length(column))
    if not lengths["min"].as_py() == lengths["max"].as_py() == width:
        return column
    return column.cast(pa.list_(column.type.value_type, width))


def with_boxes_replaced(column: pa.Array | pa.ChunkedArray, boxes: np.ndarray, rows: np.ndarray) -> pa.Array:
    """``column`` with the boxes at ``rows`` set to ``boxes[rows]`` (``boxes``: ``(n, 4)``, the
    whole column's). A ``fixed_size_list<float32>[4]`` column (as during curation) is patched
    in a copy of its values, its nulls kept; another column is rebuilt by :func:`boxes_to_arrow`."""
    chunk = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (isinstance(chunk, pa.FixedSizeListArray) and chunk.type.list_size == 4
            and pa.types.is_float32(chunk.type.value_type)) or len(chunk) == 0:
        return boxes_to_arrow(boxes)
    values = chunk.values.slice(chunk.offset * 4, len(chunk) * 4).to_numpy(zero_copy_only=False).reshape(-1, 4).copy()
    values[rows] = boxes[rows]
    mask = pa.array(~valid_mask(chunk)) if chunk.null_count else None
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 4, mask=mask)


def boxes_from_arrow(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A ``list<float>`` column of 4 values per row as ``(n, 4)`` float64 (null or other
    lengths -> NaN); fixed-size lists are read the same way."""
    return _list_to_numpy(column, 4)


def quads_from_arrow(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A ``list<float>`` column of 8 values per row as ``(n, 8)`` float64 (null -> NaN)."""
    return _list_to_numpy(column, 8)


def _to_arrow(values: np.ndarray, width: int) -> pa.ListArray:
    values = np.asarray(values, dtype=np.float32).reshape(-1, width)
    present = ~np.isnan(values).all(axis=1)
    if present.all():  # no nulls: offsets are a stride, the values one flat view
        offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * np.int32(width))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), pa.float32()))
    offsets = pa.array(np.r_[0, np.cumsum(present * width)].astype(np.int32))
    flat = pa.array(values[present].reshape(-1), pa.float32())
    mask = None if present.all() else pa.array(~present)
    return pa.ListArray.from_arrays(offsets, flat, mask=mask)


def boxes_to_arrow(boxes: np.ndarray) -> pa.ListArray:
    """An ``(n, 4)`` array as ``list<float32>`` (the schema's ``bbox``); all-NaN rows -> null."""
    return _to_arrow(boxes, 4)


def quads_to_arrow(quads: np.ndarray) -> pa.ListArray:
    """An ``(n, 8)`` array as ``list<float32>`` (the schema's ``quad``); all-NaN rows -> null."""
    return _to_arrow(quads, 8)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of ``(n, 4)`` boxes; inverted boxes have area 0."""
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return w * h


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row ``i`` of ``a`` with row ``i`` of ``b`` (both ``(n, 4)``) -> ``(n,)``.

    Two empty boxes give 0, not NaN.
    """
    ix0 = np.maximum(a[:, 0], b[:, 0])
    iy0 = np.maximum(a[:, 1], b[:, 1])
    ix1 = np.minimum(a[:, 2], b[:, 2])
    iy1 = np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    union = box_area(a) + box_area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``(n, 4)`` with every box of ``b`` ``(m, 4)`` -> ``(n, m)``."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    ia = np.repeat(np.arange(n), m)
    ib = np.tile(np.arange(m), n)
    return pairwise_iou(a[ia], b[ib]).reshape(n, m)


def clip_quads(quads: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Clip every point of ``(n, 8)`` quads to ``[0, width] x [0, height]`` per row."""
    out = quads.copy()
    w = np.asarray(width, dtype=np.float64)[:, None]
    h = np.asarray(height, dtype=np.float64)[:, None]
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out


def quad_area(quads: np.ndarray) -> np.ndarray:
    """Signed shoelace area of ``(n, 8)`` quads; clockwise on screen (y down) is positive."""
    x, y = quads[:, 0::2], quads[:, 1::2]
    return 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)


def quad_is_convex(quads: np.ndarray) -> np.ndarray:
    """True where the 4 turns of the quad all bend the same way (convex, not a bow-tie)."""
    x, y = quads[:, 0::2], quads[:, 1::2]
    ex, ey = np.roll(x, -1, axis=1) - x, np.roll(y, -1, axis=1) - y
    cross = ex * np.roll(ey, -1, axis=1) - ey * np.roll(ex, -1, axis=1)
    return (cross > 0).all(axis=1) | (cross < 0).all(axis=1)


def quad_bounds(quads: np.ndarray) -> np.ndarray:
    """Axis-aligned bounding boxes ``(n, 4)`` of ``(n, 8)`` quads."""
    x, y = quads[:, 0::2], quads[:, 1::2]
    return np.stack([x.min(axis=1), y.min(axis=1), x.max(axis=1), y.max(axis=1)], axis=1)


# ------------------------------------------------------------ one box or point list
def clip_box(box: Sequence[float], width: int, height: int) -> list[float] | None:
    """``[x0, y0, x1, y1]`` (floats) clipped to a ``width x height`` image; ``None`` when it is
    empty after clipping (``x1 <= x0`` or ``y1 <= y0``)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), float(width)), min(max(x1, 0.0), float(width))
    y0, y1 = min(max(y0, 0.0), float(height)), min(max(y1, 0.0), float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1, y1]


def clamp_points(xy: Sequence[float], width: int, height: int) -> list[float]:
    """Flat ``x, y, x, y, ...`` (quads, polygons, boxes) as floats clamped to ``[0, width] x [0, height]``."""
    limits = (float(width), float(height))
    return [min(max(float(v), 0.0), limits[i % 2]) for i, v in enumerate(xy)]
