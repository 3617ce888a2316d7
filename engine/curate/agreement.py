"""Agreement of the curated rows: which rows each survivor absorbed and which annotators saw it.

``absorbed_ids``: ids of the rows a survivor absorbed, transitively (NMS duplicates,
region-text candidates); ``seen_by``: distinct ``source@source_version`` of the annotators
that produced it or a duplicate it absorbed where the absorption counts as agreement (NMS,
merges); ``agreement`` = ``len(seen_by)``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.kernels import absorption_lists, owner_bit_sets, producer_bit_sets
from filters.base import dictionary, unique
from filters.kernels import stable_argsort


def _alphabetical(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``alpha``: the positions of ``names`` in sorted order; ``rank``: each name's place there."""
    alpha = np.argsort(np.array(names, dtype=object))
    rank = np.empty(len(names), np.int64)
    rank[alpha] = np.arange(len(names))
    return alpha, rank


def string_lists(owner: np.ndarray, values: pa.Array | pa.ChunkedArray | tuple[np.ndarray, list], m: int,
           distinct: bool) -> pa.ListArray:
    """One string list per owner ``0..m-1`` from ``values[i]`` owned by ``owner[i]``.

    Plain lists keep the given order; ``distinct`` lists hold each value once, sorted, and
    also take ``values`` as ``(codes, names)`` meaning ``names[codes[i]]`` (no re-encoding)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if distinct:
        codes, names = values if isinstance(values, tuple) else dictionary(values)
        alpha, rank = _alphabetical(names)
        if 0 < len(names) <= 64:  # one bit per name: sets without sorting
            present = codes >= 0  # a null value joins no set
            offsets, picks = owner_bit_sets(np.asarray(owner, np.int64)[present], rank[codes[present]], m)
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array(names, pa.string()).take(pa.array(alpha[picks])))
        if len(codes):
            key = unique(owner.astype(np.int64) * len(names) + rank[codes])
            owner, values = key // len(names), pa.array(names, pa.string()).take(pa.array(alpha[key % len(names)]))
        else:
            owner, values = owner[:0], pa.array([], pa.string())
    elif len(owner) and (owner[1:] < owner[:-1]).any():  # plain lists: order by owner (stable)
        order = stable_argsort(owner)
        owner, values = owner[order], values.take(pa.array(order))
    offsets = np.zeros(m + 1, np.int32)
    np.cumsum(np.bincount(owner, minlength=m), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values.cast(pa.string()))


def agreement_columns(work: pa.Table, gidx: np.ndarray, raw: pa.Table, into: np.ndarray, agrees: np.ndarray,
               producer: tuple[np.ndarray, list[str]]) -> pa.Table:
    """Add absorbed_ids / seen_by / agreement to the survivors ``work`` (raw positions ``gidx``);
    ``producer``: the ``source@source_version`` tag code of every raw row and the tags."""
    m = len(gidx)
    owner, offsets, rows = absorption_lists(into, gidx)  # chains (B -> A -> C) end at their survivor
    ids = raw["annotation_id"].take(pa.array(rows))
    ids = ids.combine_chunks().cast(pa.string()) if ids.num_chunks else pa.array([], pa.string())
    absorbed_ids = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), ids)
    codes, tags = producer
    if 0 < len(tags) <= 64:  # one bit per producer: the sets in one compiled pass
        alpha, rank = _alphabetical(tags)
        offsets, picks = producer_bit_sets(gidx, rows, owner, agrees, codes, rank)
        # the tags as codes: no string per list value is built, and Parquet takes the codes
        tag_codes = pa.DictionaryArray.from_arrays(pa.array(alpha[picks].astype(np.int32)), pa.array(tags, pa.string()))
        seen_by = pa.ListArray.from_arrays(pa.array(offsets), tag_codes)
    else:
        agreeing = rows[agrees[rows]]
        seen_by = string_lists(np.concatenate([np.arange(m), owner[agreeing]]),
                         (codes[np.concatenate([gidx, agreeing])], tags), m, distinct=True)
    out = work.append_column("absorbed_ids", absorbed_ids).append_column("seen_by", seen_by)
    return out.append_column("agreement", pc.list_value_length(seen_by).cast(pa.int32()))
