"""Curation decisions: the stored trails (one row per annotation) and their long form.

Stored (:data:`storage.schema.DECISION_TRAILS`): ``annotation_id, round, rules, dropped_by,
reason``, where ``rules`` lists the rules that judged the row in the order they ran. The
contract (:data:`storage.schema.DECISIONS`) is one row per (annotation, rule that judged it):
``annotation_id, round, rule, kept, reason``. Both carry the same facts because a dropped row
is judged by no later rule: every rule of ``rules`` kept the row except ``dropped_by``.
:func:`expand_trails` (Arrow) and :data:`DECISIONS_VIEW_SQL` (DuckDB) turn trails into the
long form; :func:`build_trails` makes trails from per-rule numpy masks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.schema import DECISION_TRAILS, DECISIONS

#: the long form over a relation named ``decision_trails`` (the catalog's view)
DECISIONS_VIEW_SQL = """
select annotation_id, round, rule, rule is distinct from dropped_by as kept,
       case when rule = dropped_by then reason end as reason
from (select annotation_id, round, unnest(rules) as rule, dropped_by, reason from decision_trails)
"""


def build_trails(ids: pa.Array | pa.ChunkedArray, round_: int, rules: Sequence[str], judged: np.ndarray,
                 dropped_by: np.ndarray, reason: pa.Array) -> pa.Table:
    """Trails of ``n`` rows.

    judged: int64 ``(n,)`` bit mask, bit ``r`` set = rule ``rules[r]`` judged the row (at most
    63 rules). dropped_by: int ``(n,)`` index into ``rules`` of the rule that dropped the row,
    -1 if none. reason: ``n`` strings, set exactly where ``dropped_by >= 0``.
    The rule names are dictionary-encoded (int8 codes), and rows sharing a mask share one
    list, so building costs a few passes over ``n`` integers.
    """
    n = len(ids)
    if len(rules) > 63:
        raise ValueError(f"at most 63 rules can be recorded, got {len(rules)}")
    names = pa.array(list(rules), pa.string())
    if len(rules) <= 20:  # distinct masks through a table of all 2^R masks (no sort)
        present = np.flatnonzero(np.bincount(judged, minlength=1 << len(rules)))
        code_of = np.zeros(1 << len(rules), np.int64)
        code_of[present] = np.arange(len(present))
        masks, mask_code = present, code_of[judged]
    else:
        masks, mask_code = np.unique(judged, return_inverse=True)
    bits = [np.flatnonzero((int(mask) >> np.arange(len(rules))) & 1) for mask in masks]
    offsets = np.zeros(len(masks) + 1, np.int32)
    np.cumsum([len(b) for b in bits], out=offsets[1:])
    flat = np.concatenate(bits).astype(np.int8) if bits else np.zeros(0, np.int8)
    per_mask = pa.ListArray.from_arrays(pa.array(offsets), pa.DictionaryArray.from_arrays(pa.array(flat), names))
    rule_lists = per_mask.take(pa.array(mask_code.astype(np.int32)))
    dropped = pa.DictionaryArray.from_arrays(pa.array(dropped_by.astype(np.int8), mask=dropped_by < 0), names)
    return pa.Table.from_arrays(
        [ids, pa.array(np.full(n, round_, np.int32)), rule_lists, dropped, reason], schema=DECISION_TRAILS)


def expand_trails(trails: pa.Table) -> pa.Table:
    """The long form (:data:`DECISIONS`) of ``trails``: one row per (annotation, rule)."""
    if trails.num_rows == 0:
        return DECISIONS.empty_table()
    rules = trails["rules"].combine_chunks().cast(pa.list_(pa.string()))
    owner = pa.array(pc.list_parent_indices(rules).to_numpy().astype(np.int64))
    rule = pc.list_flatten(rules)
    dropped_by = trails["dropped_by"].cast(pa.string()).take(owner)
    dropped = pc.fill_null(pc.equal(rule, dropped_by), False)
    reason = pc.if_else(dropped, trails["reason"].take(owner), pa.scalar(None, pa.string()))
    return pa.Table.from_arrays(
        [trails["annotation_id"].take(owner), trails["round"].take(owner), rule, pc.invert(dropped), reason],
        schema=DECISIONS)
