"""Non-maximum suppression of regions: class-aware within a source, then across sources.

``greedy_nms`` is exact greedy NMS (torchvision semantics: a box is suppressed by a kept,
higher-scored box of its group whose IoU is strictly above the threshold), vectorised:
candidate pairs are generated only inside groups (in bounded chunks), the overlapping
pairs form a DAG from higher to lower score, and decisions propagate over it level by
level (a box with no kept stronger neighbour is kept; one with a kept stronger neighbour is
suppressed by the strongest such one). Ties in score are broken by the ``tiebreak`` order.

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

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import (
    FilterContext, FilterResult, dictionary, equals, group_codes, image_keys, unique, normalized_codes, register_filter,
    reason_where, valid,
)
from storage.geometry import boxes_from_arrow, pairwise_iou

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
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], n]
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


def _tie_keys(rows: np.ndarray, n: int, tiebreak: np.ndarray | Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Int64 keys (length ``n``, set at ``rows``) ordering equal scores: lower goes first."""
    keys = np.zeros(n, np.int64)
    if tiebreak is None:
        keys[rows] = rows  # input order
    else:
        keys[rows] = tiebreak(rows) if callable(tiebreak) else np.asarray(tiebreak)[rows]
    return keys


def greedy_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
    tiebreak: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None, workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NMS per group. Returns ``keep`` (bool ``(n,)``) and ``suppressor`` (int64 ``(n,)``:
    index of the kept box that suppressed each dropped box, -1 for kept ones).

    ``tiebreak`` orders equal scores of a group (lower first; default: input order): an array
    per row, or a callable given the indices of tied rows that returns keys ordering them.

    Only the group codes are sorted: the overlapping pairs (IoU > ``threshold``) of a group
    are oriented from the stronger box (higher score, then lower tiebreak key) to the weaker,
    and greedy order matters only along those edges. Groups are independent, so from
    :data:`PARALLEL_MIN_ROWS` boxes on they are split by group code over ``workers`` threads
    (default: one per core; numpy's sorts and gathers release the GIL)."""
    n = len(boxes)
    scores = np.asarray(scores, np.float64)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and n >= PARALLEL_MIN_ROWS:
        return _greedy_nms_parallel(boxes, scores, np.asarray(groups), threshold, tiebreak, workers)
    order = np.argsort(groups)  # the edges do not depend on the order inside a group
    sorted_boxes = np.take(boxes, order, axis=0)  # np.take: ~4x faster than boxes[order] on (n, 4)
    src, dst = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for i, j in pairs_in_groups(groups[order]):
        hit = pairwise_iou(np.take(sorted_boxes, i, axis=0), np.take(sorted_boxes, j, axis=0)) > threshold
        src.append(order[i[hit]])
        dst.append(order[j[hit]])
    a, b = np.concatenate(src), np.concatenate(dst)
    tied = scores[a] == scores[b]
    swap = scores[b] > scores[a]
    if tied.any():
        keys = _tie_keys(unique(np.concatenate([a[tied], b[tied]])), n, tiebreak)
        swap |= tied & (keys[b] < keys[a])
    ei, ej = np.where(swap, b, a), np.where(swap, a, b)  # stronger -> weaker
    keep = np.ones(n, bool)
    suppressor = np.full(n, -1, np.int64)
    if len(ei) == 0:
        return keep, suppressor
    nodes = unique(np.concatenate([ei, ej]))  # boxes without an overlapping neighbour are kept
    m = len(nodes)
    local = np.empty(n, np.int64)
    local[nodes] = np.arange(m)
    li, lj = local[ei], local[ej]
    status = np.zeros(m, np.int8)  # 0 undecided, 1 kept, 2 suppressed (over the nodes)
    status[np.bincount(lj, minlength=m) == 0] = 1
    live_i, live_j = li, lj
    while len(live_j):  # level by level: kept if no kept stronger neighbour remains possible
        state = status[live_i]
        kept_in = np.bincount(live_j[state == 1], minlength=m) > 0
        undecided_in = np.bincount(live_j[state == 0], minlength=m)
        open_ = status == 0
        status[open_ & kept_in] = 2
        status[open_ & ~kept_in & (undecided_in == 0)] = 1
        still = status[live_j] == 0
        live_i, live_j = live_i[still], live_j[still]
    keep[nodes] = status == 1
    hit = (status[li] == 1) & (status[lj] == 2)
    si, sj = ei[hit], ej[hit]
    if len(sj):  # each suppressed box: its strongest kept neighbour (the first greedy reached)
        by = np.argsort(sj, kind="stable")
        si, sj = si[by], sj[by]
        starts = np.flatnonzero(np.r_[True, sj[1:] != sj[:-1]])
        runs = np.diff(np.r_[starts, len(sj)])
        score = scores[si]
        top = score == np.repeat(np.maximum.reduceat(score, starts), runs)
        contested = np.repeat(np.add.reduceat(top, starts) > 1, runs)
        pick = top & ~contested  # exactly one per uncontested suppressed box
        suppressor[sj[pick]] = si[pick]
        if contested.any():  # equal best scores: the tiebreak picks, among those rows only
            rows = np.flatnonzero(top & contested)
            keys = _tie_keys(unique(si[rows]), n, tiebreak)
            rows = rows[np.lexsort((keys[si[rows]], sj[rows]))]
            first = np.r_[True, sj[rows][1:] != sj[rows][:-1]]
            suppressor[sj[rows][first]] = si[rows][first]
    return keep, suppressor


def _greedy_nms_parallel(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
                         tiebreak: np.ndarray | Callable[[np.ndarray], np.ndarray] | None,
                         workers: int) -> tuple[np.ndarray, np.ndarray]:
    parts = [np.flatnonzero(p) for p in (groups % workers)[None, :] == np.arange(workers)[:, None]]

    def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if tiebreak is None:
            local_tiebreak = None  # rows ascend, so local input order is the global one
        elif callable(tiebreak):
            local_tiebreak = lambda local: tiebreak(rows[local])  # noqa: E731
        else:
            local_tiebreak = np.asarray(tiebreak)[rows]
        return greedy_nms(np.take(boxes, rows, axis=0), scores[rows], groups[rows], threshold, local_tiebreak,
                          workers=1)

    keep = np.ones(len(boxes), bool)
    suppressor = np.full(len(boxes), -1, np.int64)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for rows, (kept, sup) in zip(parts, pool.map(run, parts)):
            keep[rows] = kept
            suppressor[rows] = np.where(sup >= 0, rows[np.maximum(sup, 0)], -1)
    return keep, suppressor


def calibrate(scores: np.ndarray, sources: pa.Array | pa.ChunkedArray, config: NmsConfig) -> np.ndarray:
    """Scores made comparable across sources (see module docstring)."""
    if config.calibration == "raw" or len(scores) == 0:
        return scores
    codes, names = dictionary(sources)
    if config.calibration == "weight":
        return scores * np.array([config.weights.get(s, 1.0) for s in names])[codes]
    # rank: sort by (source, score); a run of equal scores [a, b) among a source's n rows
    # (positions counted from the source's first row) gets the percentile (a + b) / (2 n)
    by_score = np.argsort(scores, kind="stable")  # then a stable sort on the few source codes
    order = by_score[np.argsort(codes[by_score].astype(np.int32), kind="stable")]  # = lexsort((scores, codes))
    c, v = codes[order], scores[order]
    n = len(v)
    source_start = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    source_size = np.diff(np.r_[source_start, n])
    run_start = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (v[1:] != v[:-1])])
    run_end = np.r_[run_start[1:], n]
    src_of_run = np.searchsorted(source_start, run_start, side="right") - 1
    pct = (run_start + run_end - 2 * source_start[src_of_run]) / (2.0 * source_size[src_of_run])
    out = np.empty(n, np.float64)
    out[order] = np.repeat(pct, run_end - run_start)
    return out


def label_column(table: pa.Table) -> pa.ChunkedArray:
    """The class label of a region: ``label`` during curation (text before region-text
    replacement), else ``text``."""
    return table["label"] if "label" in table.column_names else table["text"]


def nms_result(
    table: pa.Table, scope: np.ndarray, keys: Callable[[pa.Table], list], scores: np.ndarray, threshold: float,
    what: str,
) -> FilterResult:
    """Run :func:`greedy_nms` over the ``scope`` rows grouped by ``keys(scope rows)``."""
    n = table.num_rows
    rows = np.flatnonzero(scope)
    keep = np.ones(n, bool)
    absorbed_by = np.full(n, -1, np.int64)
    if len(rows):
        sub = table if len(rows) == n else table.take(pa.array(rows))
        kept, sup = greedy_nms(boxes_from_arrow(sub["bbox"]), scores[rows], group_codes(*keys(sub, rows), dense=False), threshold,
                               tiebreak=lambda tied: group_codes(sub["annotation_id"].take(pa.array(tied))))
        keep[rows] = kept
        absorbed_by[rows[~kept]] = rows[sup[~kept]]
    # which box suppressed it is ``absorbed_by`` (the decision trails store that row's id)
    reason = reason_where(~keep, f"suppressed by a higher-scored box ({what}, IoU > {threshold})")
    return FilterResult(keep=keep, reason=reason, judged=scope, absorbed_by=absorbed_by, agrees=True)


def region_scope(table: pa.Table, config: NmsConfig) -> np.ndarray:
    """Top-level region rows with a box and a configured region_type."""
    if table.num_rows == 0:
        return np.zeros(0, bool)
    types = pc.is_in(table["region_type"], value_set=pa.array(list(config.region_types), pa.string()))
    return (equals(table["kind"], "region") & ~valid(table["parent_id"]) & valid(table["bbox"])
            & pc.fill_null(types, False).to_numpy(zero_copy_only=False))


def _keys(config: NmsConfig, ctx: FilterContext, *extra: str) -> Callable[[pa.Table, np.ndarray], list]:
    def keys(sub: pa.Table, rows: np.ndarray) -> list:
        out = [image_keys(sub, ctx), *(sub[c] for c in extra), sub["region_type"]]
        return out + [normalized_codes(label_column(sub))] if config.class_aware else out

    return keys


def _scores(table: pa.Table) -> np.ndarray:
    return pc.fill_null(table["score"], 0.0).to_numpy(zero_copy_only=False).astype(np.float64)


@register_filter("nms_source", section="nms")
def nms_within_source(table: pa.Table, config: NmsConfig, ctx: FilterContext) -> FilterResult:
    """Class-aware NMS among the regions of one source in one image (raw scores)."""
    return nms_result(table, region_scope(table, config), _keys(config, ctx, "source"), _scores(table),
                      config.iou_within_source, "same source")


@register_filter("nms_cross", section="nms")
def nms_across_sources(table: pa.Table, config: NmsConfig, ctx: FilterContext) -> FilterResult:
    """Class-aware NMS among all sources' regions of an image (calibrated scores)."""
    scope = region_scope(table, config)
    scores = np.zeros(table.num_rows)
    rows = np.flatnonzero(scope)
    if len(rows):
        scores[rows] = calibrate(_scores(table)[rows], table["source"].take(pa.array(rows)), config)
    return nms_result(table, scope, _keys(config, ctx), scores, config.iou_across_sources, "across sources")
