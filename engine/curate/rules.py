"""Running the configured curation rules over the working table, in partitions of whole images.

No rule compares rows of different images except through its ``prepare`` and ``combine``
hooks (see :mod:`filters.base`), so the working table is split into partitions of whole
images, balanced by rows, that run the rules side by side on threads (Arrow, numpy and the
compiled kernels release the GIL). The rules run in stages: a rule with hooks starts a stage;
each partition ends the stage before with that rule's ``prepare`` over its live rows, and
``combine`` joins the parts (for ``nms_cross``: the score reference of its rank
calibration), so outcomes never depend on the partitioning; a round curated in parts of its
own (``engine.curate.partitioned``) gets each such state over the whole round from
:func:`prepare_parts` of every part, and passes it in (``given``). Every rule's outcome is recorded
in :class:`RuleOutcomes`, arrays over the raw rows (partitions hold disjoint rows, so their
threads write disjoint elements).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.kernels import record_outcome
from engine.curate.working_table import to_working_type
from filters.base import FilterContext, FilterResult, FilterSpec, filter_spec

#: below this many rows per partition, threads cost more than they save
PARTITION_MIN_ROWS = 250_000


@dataclass
class RuleOutcomes:
    """Per raw row: ``judged`` (int64, bit ``r`` set = rule ``r`` judged it), ``dropped_by``
    (int16 rule index, -1 = kept), ``into`` (raw row of the survivor that absorbed it, -1)
    and ``agrees`` (its absorption counts as agreement); ``drops``: ``(raw rows, reasons)``
    per rule that dropped rows, per partition; ``protected``: a protecting rule judged and
    kept the row (no later rule judges it, the merge adds it as it is)."""

    judged: np.ndarray
    dropped_by: np.ndarray
    into: np.ndarray
    agrees: np.ndarray
    protected: np.ndarray
    drops: list[tuple[np.ndarray, pa.Array]] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int) -> "RuleOutcomes":
        return cls(np.zeros(n, np.int64), np.full(n, -1, np.int16), np.full(n, -1, np.int64), np.zeros(n, bool),
                   np.zeros(n, bool))

    def record(self, r: int, res: FilterResult, gidx: np.ndarray) -> list[tuple[np.ndarray, pa.Array]]:
        """Record rule ``r``'s result over the rows at raw positions ``gidx``; returns the drops
        to append (the caller appends them in partition order)."""
        absorbed_by = res.absorbed_by if res.absorbed_by is not None else np.zeros(0, np.int64)
        dropped = record_outcome(np.asarray(gidx, np.int64), res.judged, res.keep, absorbed_by, np.int64(1 << r), r,
                                 res.agrees, self.judged, self.dropped_by, self.into, self.agrees)
        if not len(dropped):
            return []
        return [(dropped, res.reason.filter(pa.array(~res.keep)))]


def shield(res: FilterResult, protected: np.ndarray, table: pa.Table) -> FilterResult:
    """``res`` with the ``protected`` rows (bool per row of the rule's input ``table``) unjudged,
    kept, absorbed by nothing and their replaced columns restored."""
    if not protected.any():
        return res
    mask = pa.array(protected)
    reason = res.reason.cast(pa.string()) if pa.types.is_dictionary(res.reason.type) else res.reason
    absorbed = None if res.absorbed_by is None else np.where(protected, -1, res.absorbed_by)
    replace = {column: pc.if_else(mask, table[column].cast(values.type), values) for column, values in res.replace.items()}
    return FilterResult(keep=res.keep | protected, reason=pc.if_else(mask, pa.scalar(None, pa.string()), reason),
                        judged=res.judged & ~protected, absorbed_by=absorbed, agrees=res.agrees, replace=replace)


def partition_count(rows: int, workers: int) -> int:
    """How many partitions ``rows`` rows get on ``workers`` threads (at least
    :data:`PARTITION_MIN_ROWS` rows each)."""
    return max(1, min(workers, rows // PARTITION_MIN_ROWS))


def image_partitions(image_index: np.ndarray, count: int) -> list[np.ndarray]:
    """Raw rows split into at most ``count`` ascending sets of whole images with about equal
    row counts; rows of unknown images (negative index) all land in one set."""
    n = len(image_index)
    if count <= 1 or n == 0:
        return [np.arange(n)]
    key = np.maximum(image_index, -1) + 1  # 0: every unknown image
    cumulative = np.cumsum(np.bincount(key))
    cuts = np.searchsorted(cumulative, np.arange(1, count) * (n / count))  # the key each cut falls after
    part = np.searchsorted(cuts, np.arange(len(cumulative)), side="left").astype(np.int32)[key]
    parts = [np.flatnonzero(part == p) for p in range(count)]
    return [rows for rows in parts if len(rows)]


def _stages(rules: Sequence[str]) -> list[list[tuple[int, str]]]:
    """The rules (with their index) split before every rule that has a prepare hook."""
    stages: list[list[tuple[int, str]]] = []
    for r, rule in enumerate(rules):
        if not stages or filter_spec(rule).prepare is not None:
            stages.append([])
        stages[-1].append((r, rule))
    return stages


def take_table(table: pa.Table, indices: np.ndarray, pool: ThreadPoolExecutor | None) -> pa.Table:
    """``table.take(indices)``, the columns taken on ``pool``'s threads when given (Arrow's
    take releases the GIL, so the working table shrinks on every core); an all-null column
    becomes nulls of the new length without a take. The indices are bounds-checked once here,
    not once per column by Arrow."""
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"take_table needs integer indices, got {indices.dtype}")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= table.num_rows):
        raise IndexError(f"take_table: indices outside [0, {table.num_rows})")
    index = pa.array(indices)

    def take(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
        if column.null_count == len(column):  # all null (e.g. quads in a round without OCR): nothing to move
            if len(index) <= len(column):  # a slice: no zeroed child values (8 floats a row for quads) to allocate
                return column.slice(0, len(index))
            return pa.nulls(len(index), column.type)
        return pc.take(column, index, boundscheck=False)

    columns = list((pool.map if pool is not None else map)(take, table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


#: ``plain(table, rows)``: the live rows ``table`` (at raw positions ``rows``) as plain columns,
#: for the rules that do not take the working form (``engine.curate.working_table.plain_rows``)
PlainRows = Callable[[pa.Table, np.ndarray], pa.Table]


def rule_input(spec: FilterSpec, table: pa.Table, gidx: np.ndarray, plain: PlainRows) -> pa.Table:
    """The table rule ``spec`` is given: the working table itself, or its plain columns."""
    return table if spec.working_form else plain(table, gidx)


def _run_stage(stage: list[tuple[int, str]], table: pa.Table, gidx: np.ndarray, config: Any, ctx: FilterContext,
               prepared: Any, outcomes: RuleOutcomes, pool: ThreadPoolExecutor | None, plain: PlainRows
               ) -> tuple[pa.Table, np.ndarray, list[tuple[np.ndarray, pa.Array]]]:
    drops = []
    for k, (r, rule) in enumerate(stage):
        rule_ctx = dataclasses.replace(ctx, prepared=prepared) if k == 0 and prepared is not None else ctx
        spec = filter_spec(rule)
        given = rule_input(spec, table, gidx, plain)
        res = spec.fn(given, config.section(rule), rule_ctx)
        if spec.protects:
            outcomes.protected[gidx[res.judged & res.keep]] = True
        else:
            res = shield(res, outcomes.protected[gidx], given)
        drops += outcomes.record(r, res, gidx)
        for column, values in res.replace.items():
            i = table.schema.get_field_index(column)
            table = table.set_column(i, column, to_working_type(values, column, table, rule))
        if not res.keep.all():
            survivors = np.flatnonzero(res.keep)
            table, gidx = take_table(table, survivors, pool), gidx[survivors]
    return table, gidx, drops


def run_rules(work: pa.Table, rules: Sequence[str], config: Any, ctx: FilterContext, image_index: np.ndarray,
              pool: ThreadPoolExecutor, partitions: int, plain: PlainRows, given: Mapping[str, Any] | None = None
              ) -> tuple[pa.Table, np.ndarray, RuleOutcomes]:
    """Run ``rules`` (in order, each on the rows still alive) over ``work``, one row per raw
    row, split into at most ``partitions`` image partitions (``image_index`` per row) on
    ``pool``. Returns the surviving rows of ``work`` in raw order, their raw positions and
    the outcomes. ``config.section(rule)`` gives a rule's settings; a rule that does not take
    the working form gets ``plain(rows)``. ``given``: rule -> the state its ``combine`` hook
    made over rows beyond ``work`` (a whole round curated in parts, ``engine.curate.partitioned``);
    such a rule is given it instead of preparing over ``work``."""
    states, outcomes, _ = _drive(work, rules, config, ctx, image_index, pool, partitions, plain, given or {}, None)
    if len(states) == 1:
        return states[0][0], states[0][1], outcomes
    gidx = np.concatenate([g for _, g in states])
    order = np.argsort(gidx, kind="stable")  # back to raw order: the curated set does not depend on the partitioning
    return take_table(pa.concat_tables([t for t, _ in states]), order, pool), gidx[order], outcomes


def prepare_parts(work: pa.Table, rules: Sequence[str], config: Any, ctx: FilterContext, image_index: np.ndarray,
                  pool: ThreadPoolExecutor, partitions: int, plain: PlainRows, rule: str,
                  given: Mapping[str, Any] | None = None) -> list:
    """The ``prepare`` parts of ``rule`` (a rule that starts a stage) over the rows of ``work``
    still alive when it would run: the rules before it run as in :func:`run_rules` (with the
    ``given`` states of earlier hooked rules); ``rule``'s ``combine`` over the parts of every
    piece of a round gives its state over the whole round."""
    if rule not in rules or filter_spec(rule).prepare is None:
        raise ValueError(f"{rule!r} is not a rule with a prepare hook among {list(rules)}")
    _, _, parts = _drive(work, rules, config, ctx, image_index, pool, partitions, plain, given or {}, rule)
    return parts


def _drive(work: pa.Table, rules: Sequence[str], config: Any, ctx: FilterContext, image_index: np.ndarray,
           pool: ThreadPoolExecutor, partitions: int, plain: PlainRows, given: Mapping[str, Any], stop: str | None
           ) -> tuple[list[tuple[pa.Table, np.ndarray]], RuleOutcomes, list | None]:
    """The stages of ``rules`` over ``work``'s image partitions; with ``stop``, up to the stage
    that rule starts, returning its prepare parts instead of running it."""
    n = work.num_rows
    outcomes = RuleOutcomes.empty(n)
    parts = image_partitions(image_index, partitions)
    if len(parts) == 1:  # one partition: the rules use every core themselves
        states = [(work, parts[0])]
        part_ctx, inner = ctx, pool
    else:
        states = list(pool.map(lambda rows: (take_table(work, rows, None), rows), parts))
        part_ctx, inner = dataclasses.replace(ctx, workers=1), None
    stages = _stages(rules)
    spread = pool.map if len(states) > 1 else map

    def prepare(k: int, table: pa.Table, gidx: np.ndarray) -> Any:
        """One partition's part of stage ``k``'s state (None past the last stage, without hooks or given)."""
        spec = filter_spec(stages[k][0][1]) if k < len(stages) else None
        if not (spec and spec.prepare) or spec.name in given:
            return None
        return spec.prepare(rule_input(spec, table, gidx, plain), config.section(spec.name), part_ctx)

    def run(k: int, table: pa.Table, gidx: np.ndarray, prepared: Any) -> tuple:
        table, gidx, drops = _run_stage(stages[k], table, gidx, config, part_ctx, prepared, outcomes, inner, plain)
        return table, gidx, drops, prepare(k + 1, table, gidx)

    parts_of_state = list(spread(lambda state: prepare(0, state[0], state[1]), states))
    for k, stage in enumerate(stages):
        first = filter_spec(stage[0][1])
        if first.name == stop:
            return states, outcomes, parts_of_state
        if first.name in given:
            prepared = given[first.name]
        else:
            prepared = first.combine(parts_of_state) if first.combine is not None else None
        results = list(spread(lambda state: run(k, state[0], state[1], prepared), states))
        states = [(table, gidx) for table, gidx, _, _ in results]
        parts_of_state = [part for _, _, _, part in results]
        for _, _, drops, _ in results:
            outcomes.drops += drops
    return states, outcomes, None
