"""Non-maximum suppression of regions: class-aware within a source, then across sources.

``greedy_nms`` is exact greedy NMS (torchvision semantics: a box is suppressed by a kept,
higher-scored box of its group whose IoU is strictly above the threshold): rows are
radix-sorted by group once and compiled kernels (:mod:`filters.kernels`) sort each group by
score and suppress inside it, so the work is linear in the rows plus the pairs inside groups.
Ties in score are broken by the ``tiebreak`` order.

Scope of the region rules: ``kind == region`` rows without ``parent_id`` that have a box and
a ``region_type`` in ``region_types``. Groups are (image, [source], region_type, label) with
the label compared lowercased and trimmed (``class_aware``; otherwise without the label).
Across sources, scores are first calibrated per source (``calibration``):
``rank`` = the score's percentile among that source's rows judged by the rule (ties
averaged), so each annotator's own scale does not matter; ``weight`` = score x
``weights[source]`` (default 1); ``raw`` = the score as reported. Missing scores count as 0.
Suppressed rows are absorbed by their suppressor, which gains their sources as agreement.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import (
    FilterContext,
    FilterResult,
    StateFiles,
    dictionary,
    equals,
    group_codes,
    image_keys,
    is_in,
    normalized_codes,
    reason_where,
    register_filter,
    valid,
)
from filters.kernels import greedy_in_groups, merge_sorted, ranks_against, sort_groups_by_score, stable_argsort
from filters.rank_files import RankLookup, combine_key_files, read_ranks, sort_key, write_keys
from storage.geometry import boxes_from_arrow

CALIBRATIONS = ("rank", "weight", "raw")
PAIR_BUDGET = 2_000_000  # candidate pairs held in memory at once (a memory bound, not a threshold)
PARALLEL_MIN_ROWS = 200_000  # below this, splitting the groups over threads costs more than it saves


@dataclass(frozen=True)
class NmsConfig:
    iou_within_source: float = 0.5
    iou_across_sources: float = 0.6
    class_aware: bool = True
    calibration: str = "rank"
    weights: dict[str, float] = field(default_factory=dict)
    region_types: tuple[str, ...] = ("object", "ocr")

    def __post_init__(self) -> None:
        for name in ("iou_within_source", "iou_across_sources"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"nms.{name} must be in [0, 1], got {value!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"nms.calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        for source, weight in self.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
                raise ValueError(f"nms.weights[{source!r}] must be > 0, got {weight!r}")


def pairs_in_groups(groups: np.ndarray, budget: int = PAIR_BUDGET) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All position pairs ``(i, j)``, ``i < j``, of equal ``groups`` (sorted), in chunks."""
    n = len(groups)
    if n < 2:
        return
    bounds = group_starts(groups)
    starts, ends = bounds[:-1], bounds[1:]
    later = np.repeat(ends, ends - starts) - np.arange(n) - 1  # partners after each position
    cum = np.cumsum(later)
    lo = 0
    while lo < n:
        base = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, base + budget, side="right")), lo + 1)
        count = later[lo:hi]
        total = int(count.sum())
        if total:
            i = np.repeat(np.arange(lo, hi), count)
            j = i + 1 + np.arange(total) - np.repeat(np.cumsum(count) - count, count)
            yield i, j
        lo = hi


def group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """Int64 start positions of the runs of equal values in ``sorted_groups``, plus ``n``."""
    n = len(sorted_groups)
    return np.r_[np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]), n].astype(np.int64)


def over_groups(kernel: Callable[..., None], starts: np.ndarray, workers: int, *args) -> None:
    """Run ``kernel(*args, first, last)`` over the groups ``[first, last)`` of ``starts``, split
    into ``workers`` contiguous ranges of about equal row counts on threads (the kernels
    release the GIL; below :data:`PARALLEL_MIN_ROWS` rows, on this thread)."""
    groups = len(starts) - 1
    if workers <= 1 or starts[-1] < PARALLEL_MIN_ROWS:
        kernel(*args, 0, groups)
        return
    cuts = np.unique(np.searchsorted(starts, np.linspace(0, starts[-1], workers + 1)[1:-1]))
    bounds = [0, *(int(c) for c in cuts if 0 < c < groups), groups]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda k: kernel(*args, bounds[k], bounds[k + 1]), range(len(bounds) - 1)))


def greedy_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
    tiebreak: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None, workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NMS per group. Returns ``keep`` (bool ``(n,)``) and ``suppressor`` (int64 ``(n,)``:
    index of the kept box that suppressed each dropped box, -1 for kept ones).

    ``groups``: integer group code per row. ``tiebreak`` orders equal scores of a group (lower
    first; default: input order): an array per row, or a callable given the indices of the
    tied rows only that returns keys ordering them.

    The rows are radix-sorted by group once; compiled kernels (:mod:`filters.kernels`) sort
    each group by score and suppress in it. Groups are independent, so from
    :data:`PARALLEL_MIN_ROWS` boxes on they are split over ``workers`` threads (default: one
    per core)."""
    n = len(boxes)
    keep = np.ones(n, bool)
    suppressor = np.full(n, -1, np.int64)
    if n == 0:
        return keep, suppressor
    workers = (os.cpu_count() or 1) if workers is None else workers
    boxes = np.ascontiguousarray(boxes, np.float64)
    scores = np.ascontiguousarray(scores, np.float64)
    groups = np.asarray(groups)
    order = stable_argsort(groups)  # rows ascend inside a group: ties start in input order
    starts = group_starts(groups[order])
    keys = np.arange(n)
    tied = np.zeros(n, bool)
    over_groups(sort_groups_by_score, starts, workers, order, starts, scores, keys, tied)
    if tiebreak is not None and tied.any():
        rows = np.flatnonzero(tied)
        keys[rows] = tiebreak(rows) if callable(tiebreak) else np.asarray(tiebreak)[rows]
        over_groups(sort_groups_by_score, starts, workers, order, starts, scores, keys, tied)
    over_groups(greedy_in_groups, starts, workers, order, starts, boxes, float(threshold), keep, suppressor)
    return keep, suppressor


def _source_rows(sources: pa.Array | pa.ChunkedArray) -> list[tuple[str | None, np.ndarray]]:
    """``(source name, its rows)`` for every source present (null as None), from one stable
    sort of the source codes."""
    codes, names = dictionary(sources)
    group = np.where(codes < 0, len(names), codes)
    order = stable_argsort(group)
    bounds = np.searchsorted(group[order], np.arange(len(names) + 2))
    return [(name, order[bounds[k]:bounds[k + 1]]) for k, name in enumerate([*names, None])
            if bounds[k + 1] > bounds[k]]


def _reference(key: np.ndarray, by_source: list[tuple[str | None, np.ndarray]]) -> dict[str | None, np.ndarray]:
    return {name: np.sort(key[rows]) for name, rows in by_source}


def score_reference(scores: np.ndarray, sources: pa.Array | pa.ChunkedArray) -> dict[str | None, np.ndarray]:
    """Every source's scores, sorted ascending (NaN last): what ``rank`` calibration places a
    score among. ``nms_cross`` builds it over the rows of every curation partition."""
    return _reference(sort_key(np.asarray(scores, np.float64)), _source_rows(sources))


def calibrate(scores: np.ndarray, sources: pa.Array | pa.ChunkedArray, config: NmsConfig,
              reference: dict[str | None, np.ndarray] | None = None) -> np.ndarray:
    """Scores made comparable across sources (see module docstring).

    ``rank``: a score with ``a`` scores of its source's reference below it and ``b`` at or
    below it gets ``(a + b) / (2 n)`` (ties averaged; NaN scores tie with each other above
    every number). ``reference``: :func:`score_reference` of the rows the rule judges (default:
    of ``scores`` themselves; it must hold every source of ``sources``), or a partition's
    :class:`filters.rank_files.RankLookup` of those ranks, made out of core."""
    if config.calibration == "raw" or len(scores) == 0:
        return scores
    if config.calibration == "weight":
        codes, names = dictionary(sources)
        return scores * np.array([config.weights.get(s, 1.0) for s in names] + [1.0])[codes]
    key = sort_key(np.asarray(scores, np.float64))
    by_source = _source_rows(sources)
    reference = _reference(key, by_source) if reference is None else reference
    out = np.empty(len(scores), np.float64)
    for name, rows in by_source:
        if isinstance(reference, RankLookup):  # a partition's share, ranked out of core
            out[rows] = reference.of(name, key[rows])
            continue
        ranks = np.empty(len(rows), np.float64)
        mine = key[rows]
        ranks_against(reference[name], mine, np.argsort(mine), ranks)
        out[rows] = ranks
    return out


def label_column(table: pa.Table) -> pa.ChunkedArray:
    """The class label of a region: ``label`` during curation (text before region-text
    replacement), else ``text``."""
    return table["label"] if "label" in table.column_names else table["text"]


def nms_result(
    table: pa.Table, scope: np.ndarray, keys: Callable[[pa.Table], list], scores: np.ndarray, threshold: float,
    what: str, workers: int | None = None,
) -> FilterResult:
    """Run :func:`greedy_nms` over the ``scope`` rows grouped by ``keys(scope rows)`` on
    ``workers`` threads (None: one per core)."""
    n = table.num_rows
    rows = np.flatnonzero(scope)
    keep = np.ones(n, bool)
    absorbed_by = np.full(n, -1, np.int64)
    if len(rows):
        sub = table if len(rows) == n else table.take(pa.array(rows))
        boxes = boxes_from_arrow(sub["bbox"])
        groups = group_codes(*keys(sub, rows), dense=False)
        kept, sup = greedy_nms(boxes, scores[rows], groups, threshold, workers=workers,
                               tiebreak=lambda tied: group_codes(sub["annotation_id"].take(pa.array(tied))))
        keep[rows] = kept
        absorbed_by[rows[~kept]] = rows[sup[~kept]]
    # which box suppressed it is ``absorbed_by`` (the decision trails reference that row by its position)
    reason = reason_where(~keep, f"suppressed by a higher-scored box ({what}, IoU > {threshold})")
    return FilterResult(keep=keep, reason=reason, judged=scope, absorbed_by=absorbed_by, agrees=True)


def region_scope(table: pa.Table, config: NmsConfig) -> np.ndarray:
    """Top-level region rows with a box and a configured region_type."""
    if table.num_rows == 0:
        return np.zeros(0, bool)
    return (equals(table["kind"], "region") & ~valid(table["parent_id"]) & valid(table["bbox"])
            & is_in(table["region_type"], config.region_types))


def _keys(config: NmsConfig, ctx: FilterContext, *extra: str) -> Callable[[pa.Table, np.ndarray], list]:
    def keys(sub: pa.Table, rows: np.ndarray) -> list:
        out = [image_keys(sub, ctx), *(sub[c] for c in extra), sub["region_type"]]
        return out + [normalized_codes(label_column(sub))] if config.class_aware else out

    return keys


def _scores(table: pa.Table) -> np.ndarray:
    return pc.fill_null(table["score"], 0.0).to_numpy(zero_copy_only=False).astype(np.float64)


@register_filter("nms_source", section="nms", settings=NmsConfig, working_form=True)
def nms_within_source(table: pa.Table, config: NmsConfig, ctx: FilterContext) -> FilterResult:
    """Class-aware NMS among the regions of one source in one image (raw scores)."""
    return nms_result(table, region_scope(table, config), _keys(config, ctx, "source"), _scores(table),
                      config.iou_within_source, "same source", ctx.workers)


def rank_reference(table: pa.Table, config: NmsConfig, ctx: FilterContext) -> dict[str | None, np.ndarray] | None:
    """``nms_cross``'s prepare hook: the :func:`score_reference` of the rows it judges in
    ``table`` (one partition's), None unless calibrating by rank."""
    if config.calibration != "rank":
        return None
    rows = np.flatnonzero(region_scope(table, config))
    return score_reference(_scores(table)[rows], table["source"].take(pa.array(rows)))


def merge_references(parts: list[dict[str | None, np.ndarray] | None]) -> dict[str | None, np.ndarray] | None:
    """``nms_cross``'s combine hook: the partitions' references merged per source, so ranks
    do not depend on the partitioning."""
    if not parts or parts[0] is None:
        return None
    names = {name for part in parts for name in part}
    return {name: functools.reduce(_merge_two, [part[name] for part in parts if name in part]) for name in names}


def _merge_two(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype != b.dtype:
        a, b = a.astype(np.float64), b.astype(np.float64)
    return merge_sorted(a, b)


#: a round curated in partitions ranks every partition's scores out of core (filters.rank_files)
RANK_FILES = StateFiles(write=write_keys, combine=combine_key_files, read=read_ranks)


@register_filter("nms_cross", section="nms", settings=NmsConfig, working_form=True, prepare=rank_reference,
                 combine=merge_references, state_files=RANK_FILES)
def nms_across_sources(table: pa.Table, config: NmsConfig, ctx: FilterContext) -> FilterResult:
    """Class-aware NMS among all sources' regions of an image (calibrated scores; the rank
    reference is ``ctx.prepared`` when the engine prepared it over every partition)."""
    scope = region_scope(table, config)
    scores = np.zeros(table.num_rows)
    rows = np.flatnonzero(scope)
    if len(rows):
        scores[rows] = calibrate(_scores(table)[rows], table["source"].take(pa.array(rows)), config, ctx.prepared)
    return nms_result(table, scope, _keys(config, ctx), scores, config.iou_across_sources, "across sources",
                      ctx.workers)
