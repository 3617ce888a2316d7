"""Curation decisions: the stored trails (one row per annotation) and their long form.

Stored (:data:`storage.schema.DECISION_TRAILS`): ``annotation_id, round, row, rules,
dropped_by, reason, absorbed_row, merged_into``, where ``rules`` names the rules that judged
the row in the order they ran, joined by ``,``, and the row that absorbed a dropped one is a
reference: ``absorbed_row`` (the ``row`` of a trail of the same round) or ``merged_into``
(the id of a previous round's curated row). The contract (:data:`storage.schema.DECISIONS`) is
one row per (annotation, rule that judged it): ``annotation_id, round, rule, kept, reason,
absorbed_by``. Both carry the same facts because a dropped row is judged by no later rule:
every rule of ``rules`` kept the row except ``dropped_by``. :func:`expand_trails` (Arrow) and
:data:`DECISIONS_VIEW_SQL` (DuckDB) turn trails into the long form, resolving the references
into ``absorbed_by``; :func:`build_trails` makes trails from per-rule numpy masks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.arrow_masks import with_nulls
from storage.schema import DECISION_TRAILS, DECISIONS, RULE_SEPARATOR

#: the long form over a relation named ``decision_trails`` (the catalog's view); the
#: absorbing row's id is looked up (one hash join on round and row) before the rules unnest
DECISIONS_VIEW_SQL = """
select annotation_id, round, rule, rule is distinct from dropped_by as kept,
       case when rule = dropped_by then reason end as reason,
       case when rule = dropped_by then absorbed_by end as absorbed_by
from (select t.annotation_id, t.round, unnest(string_split(t.rules, ',')) as rule, t.dropped_by, t.reason,
             coalesce(t.merged_into, a.annotation_id) as absorbed_by
      from decision_trails t
      left join (select round, row, annotation_id from decision_trails) a
        on a.round = t.round and a.row = t.absorbed_row)
"""


def build_trails(ids: pa.Array | pa.ChunkedArray, round_: int, rules: Sequence[str], judged: np.ndarray,
                 dropped_by: np.ndarray, reason: pa.Array, absorbed_row: np.ndarray | None = None,
                 merged_into: pa.Array | pa.ChunkedArray | None = None) -> pa.Table:
    """Trails of ``n`` rows, the round's raw rows in order (``row`` = position).

    judged: int64 ``(n,)`` bit mask, bit ``r`` set = rule ``rules[r]`` judged the row (at most
    63 rules). dropped_by: int ``(n,)`` index into ``rules`` of the rule that dropped the row,
    -1 if none. reason: ``n`` strings (plain or dictionary), set exactly where
    ``dropped_by >= 0``. absorbed_row: int ``(n,)`` position of the row that absorbed it, -1
    where none did (None: none anywhere). merged_into: ``n`` ids of previous curated rows,
    null where not merged (None: all null). Rows sharing a mask share one dictionary entry for
    ``rules``, so building costs a few passes over ``n`` integers.
    """
    n = len(ids)
    if len(rules) > 63:
        raise ValueError(f"at most 63 rules can be recorded, got {len(rules)}")
    if bad := [r for r in rules if RULE_SEPARATOR in r]:
        raise ValueError(f"rule names cannot hold {RULE_SEPARATOR!r}: {bad}")
    if len(rules) <= 20:  # distinct masks through a table of all 2^R masks (no sort)
        present = np.flatnonzero(np.bincount(judged, minlength=1 << len(rules)))
        code_of = np.zeros(1 << len(rules), np.int64)
        code_of[present] = np.arange(len(present))
        masks, mask_code = present, code_of[judged]
    else:
        masks, mask_code = np.unique(judged, return_inverse=True)
    paths = [RULE_SEPARATOR.join(r for k, r in enumerate(rules) if int(mask) >> k & 1) for mask in masks]
    rule_paths = pa.DictionaryArray.from_arrays(pa.array(mask_code.astype(np.int32)), pa.array(paths, pa.string()))
    names = pa.array(list(rules), pa.string())
    dropped = pa.DictionaryArray.from_arrays(with_nulls(dropped_by.astype(np.int32), dropped_by < 0), names)
    if absorbed_row is None:
        absorbed = pa.nulls(n, pa.int32())
    else:
        absorbed_row = np.asarray(absorbed_row)
        if len(absorbed_row) != n or (absorbed_row >= n).any():
            raise ValueError(f"absorbed_row must hold {n} positions below {n} (-1: none)")
        absorbed = with_nulls(absorbed_row.astype(np.int32), absorbed_row < 0)
    merged_into = pa.nulls(n, pa.string()) if merged_into is None else merged_into
    if not pa.types.is_dictionary(reason.type):
        reason = reason.cast(pa.string()).dictionary_encode()
    return pa.Table.from_arrays(
        [ids, pa.array(np.full(n, round_, np.int32)), pa.array(np.arange(n, dtype=np.int32)), rule_paths, dropped,
         reason, absorbed, merged_into], schema=DECISION_TRAILS)


def value_counts(column: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """Rows per non-null value of a string or dictionary column (a dictionary column is
    counted over its indices, without decoding a string per row)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if len(column) == 0:
        return {}
    if pa.types.is_dictionary(column.type):
        indices = pc.drop_null(column.indices).to_numpy(zero_copy_only=False)
        counts = np.bincount(indices, minlength=len(column.dictionary))
        out: dict[str, int] = {}
        for value, count in zip(column.dictionary.to_pylist(), counts.tolist()):
            if count:
                out[value] = out.get(value, 0) + count
        return out
    return {row["values"]: int(row["counts"]) for row in pc.value_counts(pc.drop_null(column)).to_pylist()}


def judged_counts(trails: pa.Table) -> dict[str, int]:
    """How many rows each rule judged (counted over the distinct rule paths, not per row)."""
    counts: dict[str, int] = {}
    for path, rows in value_counts(trails["rules"]).items():
        for rule in filter(None, path.split(RULE_SEPARATOR)):
            counts[rule] = counts.get(rule, 0) + rows
    return counts


def absorber_ids(trails: pa.Table) -> pa.ChunkedArray:
    """Per trail: the id of the row that absorbed it (``merged_into``, else the id of the trail
    of the same round whose ``row`` is ``absorbed_row``), null where none did."""
    rows = pc.cast(trails["absorbed_row"], pa.int64())
    base = pc.multiply(pc.cast(trails["round"], pa.int64()), 1 << 32)  # (round, row) as one int64 key
    key, target = pc.add(base, pc.cast(trails["row"], pa.int64())), pc.add(base, rows)
    found = pc.index_in(target, value_set=key.combine_chunks())
    ids = trails["annotation_id"].take(found)
    if found.null_count != rows.null_count:
        raise ValueError(f"{found.null_count - rows.null_count} trails name an absorbed_row absent from their round")
    return pc.coalesce(trails["merged_into"], ids)


def expand_trails(trails: pa.Table) -> pa.Table:
    """The long form (:data:`DECISIONS`) of ``trails`` (every trail of each round they hold,
    so ``absorbed_row`` references resolve): one row per (annotation, rule)."""
    if trails.num_rows == 0:
        return DECISIONS.empty_table()
    rules = pc.split_pattern(trails["rules"].cast(pa.string()).combine_chunks(), RULE_SEPARATOR)
    owner = pa.array(pc.list_parent_indices(rules).to_numpy().astype(np.int64))
    rule = pc.list_flatten(rules)
    dropped_by = trails["dropped_by"].cast(pa.string()).take(owner)
    dropped = pc.fill_null(pc.equal(rule, dropped_by), False)
    null = pa.scalar(None, pa.string())
    reason = pc.if_else(dropped, trails["reason"].take(owner).cast(pa.string()), null)
    absorbed_by = pc.if_else(dropped, absorber_ids(trails).take(owner), null)
    return pa.Table.from_arrays(
        [trails["annotation_id"].take(owner), trails["round"].take(owner), rule, pc.invert(dropped), reason,
         absorbed_by], schema=DECISIONS)
