"""What an absorbed object box brings to the previous box that lacks it.

When the merge absorbs this round's object boxes into a previous curated box (fusion evidence,
or the same producer's box again), the previous row keeps its identity, but a newer checkpoint
may have given the object what the row never had:

* a **mask** (``polygons`` and ``mask_rle``, from ``REGION_TO_SEGMENTATION`` on that box): the
  previous row takes the mask of its highest-scored absorbed box that has one, when it has none;
* a **description** (a region whose ``text`` differs from its class ``label``: the region-text
  rule's choice, e.g. the box's own ``REGION_TO_DESCRIPTION``): the previous row takes the
  description of its highest-scored absorbed box *of the same (normalised) label* as the row's
  label after fusion, when it has none (no label, or text equal to the label).

Nothing a row already has is replaced; geometry stays in absolute pixels of the upright image.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.fusion import fusable
from filters.base import valid


def _norm(value: str | None) -> str:
    return (value or "").strip().lower()


def _described(label: str | None, text: str | None) -> bool:
    return bool(label and text and _norm(text) != _norm(label))


def carry_details(prev: pa.Table, new: pa.Table, target: np.ndarray) -> pa.Table:
    """``prev`` (after fusion) with masks and descriptions taken from the ``new`` rows merged into
    it (``target[i]``: the previous row new row ``i`` went into, -1 none); see the module docstring."""
    rows = np.flatnonzero((target >= 0) & fusable(new))
    if len(rows) == 0:
        return prev
    has_mask = valid(new["mask_rle"])[rows]
    text_new = new["text"].take(pa.array(rows)).to_pylist()
    label_new = new["label"].take(pa.array(rows)).to_pylist() if "label" in new.column_names else [None] * len(rows)
    described = np.array([_described(lab, t) for lab, t in zip(label_new, text_new)], bool)
    useful = has_mask | described
    if not useful.any():
        return prev
    rows, has_mask, described = rows[useful], has_mask[useful], described[useful]
    text_new = [t for t, u in zip(text_new, useful) if u]
    label_new = [lab for lab, u in zip(label_new, useful) if u]
    score = pc.fill_null(new["score"], 0.0).to_numpy(zero_copy_only=False).astype(float)[rows]
    order = np.lexsort((rows, -score))  # best first; ties by position
    prev_mask = valid(prev["mask_rle"])
    prev_label = pc.coalesce(prev["label"], prev["text"]).to_pylist()
    prev_text = prev["text"].to_pylist()
    mask_from: dict[int, int] = {}
    text_for: dict[int, str] = {}
    for k in order:
        p = int(target[rows[k]])
        if has_mask[k] and not prev_mask[p] and p not in mask_from:
            mask_from[p] = int(rows[k])
        if described[k] and p not in text_for and not _described(prev_label[p], prev_text[p]) \
                and _norm(label_new[k]) == _norm(prev_label[p]):
            text_for[p] = text_new[k]
    out = prev
    if mask_from:
        where = np.array(sorted(mask_from), np.int64)
        source = np.array([mask_from[p] for p in where], np.int64)
        for column in ("polygons", "mask_rle"):
            out = _put(out, column, where, new[column].take(pa.array(source)))
    if text_for:
        where = np.array(sorted(text_for), np.int64)
        out = _put(out, "label", where, pa.array([prev_label[p] for p in where], pa.string()))
        out = _put(out, "text", where, pa.array([text_for[p] for p in where], pa.string()))
    return out


def _put(table: pa.Table, column: str, where: np.ndarray, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with ``column`` set to ``values`` at the rows ``where`` (type kept)."""
    current = table[column].combine_chunks()
    values = (values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values).cast(current.type)
    take = np.arange(table.num_rows)
    take[where] = table.num_rows + np.arange(len(where))
    merged = pa.concat_arrays([current, values]).take(pa.array(take))
    return table.set_column(table.schema.get_field_index(column), column, merged)
