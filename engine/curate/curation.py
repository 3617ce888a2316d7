"""Curation of one round: run the configured filters over all raw annotations, record every
decision, resolve agreement and merge with the previous round's curated set.

``curate_tables`` is pure (tables in, tables out); ``curate_round`` reads and writes the data
root. Rows pass the rules of ``config.rules`` in order; each rule sees the rows still alive,
and every row it judges gets one decision row (annotation_id, round, rule, kept, reason).

Curated table (:data:`CURATED` = ``ANNOTATIONS`` + the columns below):

* ``label``: a region's class label (its raw ``text``) kept when ``region_text`` replaces
  ``text`` with the matched description; null for other kinds;
* ``absorbed_ids``: ids of the rows this one absorbed, transitively (NMS duplicates,
  region-text candidates, and later rounds' rows merged into it);
* ``seen_by``: distinct ``source@source_version`` of the annotators that produced it or a
  duplicate it absorbed by NMS or merge; ``agreement`` = ``len(seen_by)``. A later round's
  model with a new checkpoint that finds the same box raises agreement; the same checkpoint
  re-finding it only merges (it is not independent evidence).

Merge across rounds: the curated set of round R is the previous curated set (rows carried
over, agreement raised where a new row matched) plus the new rows that matched nothing. A
new row matches a previous one of the same image, kind, granularity, region type and
normalised label/text when both have no box or their IoU >= ``merge.iou_threshold`` (the
best IoU wins); a new phrase whose parent caption merged points at the previous caption.
Invariant: new rows in the curated set + dropped rows = raw rows of the round.

Decisions are returned and written as trails (``storage.decisions``): one row per raw row
with the rules that judged it, the rule that dropped it, the reason and a reference to the
row that absorbed it (its position among the round's raw rows, or the id of the previous
round's curated row a merge put it into); ``expand_trails`` and the catalog's ``decisions``
view give the long form, with the absorbing row's id.

The working table the filters see is narrow (``filters.base.CURATION_COLUMNS`` plus
``label`` and ``image_index``, so the 64-character image ids are hashed once and never
copied), with the low-cardinality ``CATEGORICAL_COLUMNS`` and ``text`` dictionary-encoded
and boxes as fixed-size lists; ``engine.curate.rules`` runs the rules over it in image
partitions on threads (the result does not depend on their number), and the wide columns
are taken from the raw table once, for the survivors. Without a merge the trails are final
once the rules ran: they are built and written on workers while the curated set is assembled.

Known limits: a region-text candidate whose parent region lives only in the previous
curated set is dropped as an orphan, and a merged region keeps the previous row's text even
when the new row brought a matched description.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.config import CurationConfig
from engine.curate.rules import partition_count, run_rules, take_table
from engine.curate.parquet_io import (
    IMAGE_SIZES, conform, read_curated, read_image_sizes, read_raw, write_datasets,
)
from engine.curate.text_metrics import metrics_function
from filters.base import (
    CATEGORICAL_COLUMNS, CURATION_COLUMNS, IMAGE_INDEX, FilterContext, dictionary, equals, group_codes,
    image_index_column, normalized_codes, reason_where, unique, valid,
)
from filters.kernels import absorption_lists, owner_bit_sets, producer_bit_sets, stable_argsort
from filters.nms import pairs_in_groups
from storage.arrow_masks import with_nulls
from storage.atomic import write_text_atomic
from storage.geometry import as_fixed_size, boxes_from_arrow, pairwise_iou
from storage.layout import DataRoot
from storage.decisions import build_trails, judged_counts, value_counts
from storage.schema import ANNOTATIONS, CURATED

MERGE_RULE = "merge"


def _alphabetical(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``alpha``: the positions of ``names`` in sorted order; ``rank``: each name's place there."""
    alpha = np.argsort(np.array(names, dtype=object))
    rank = np.empty(len(names), np.int64)
    rank[alpha] = np.arange(len(names))
    return alpha, rank


def _lists(owner: np.ndarray, values: pa.Array | pa.ChunkedArray | tuple[np.ndarray, list], m: int,
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


def _agreement(work: pa.Table, gidx: np.ndarray, raw: pa.Table, into: np.ndarray, agrees: np.ndarray,
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
        seen_by = _lists(np.concatenate([np.arange(m), owner[agreeing]]),
                         (codes[np.concatenate([gidx, agreeing])], tags), m, distinct=True)
    out = work.append_column("absorbed_ids", absorbed_ids).append_column("seen_by", seen_by)
    return out.append_column("agreement", pc.list_value_length(seen_by).cast(pa.int32()))


def _merge_keys(table: pa.Table) -> list:
    kind = table["kind"]
    text = normalized_codes(pc.if_else(pc.equal(kind, "region"), pc.coalesce(table["label"], table["text"]), table["text"]))
    parent = pc.if_else(pc.equal(kind, "phrase"), table["parent_id"], pa.scalar(None, pa.string()))
    return [table["image_id"], kind, table["granularity"], table["region_type"], text, parent]


def match_previous(new: pa.Table, prev: pa.Table, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """For every row of ``new``: the index of the previous row it merges into (-1) and the IoU."""
    columns = ["image_id", "kind", "granularity", "region_type", "text", "label", "parent_id", "bbox"]
    new = new.select(columns)
    both = pa.concat_tables([prev.select(columns).cast(new.schema), new])
    codes = group_codes(*_merge_keys(both))
    n_prev = prev.num_rows
    boxes = boxes_from_arrow(both["bbox"])
    has_box = valid(both["bbox"])
    order = np.argsort(codes, kind="stable")
    best = np.full(new.num_rows, -1, np.int64)
    best_iou = np.full(new.num_rows, -1.0)
    for i, j in pairs_in_groups(codes[order]):
        a, b = order[i], order[j]
        cross = (a < n_prev) != (b < n_prev)
        p, q = np.where(a < n_prev, a, b)[cross], np.where(a < n_prev, b, a)[cross]
        iou = np.where(has_box[p] & has_box[q], pairwise_iou(boxes[p], boxes[q]), np.where(has_box[p] | has_box[q], 0, 1))
        hit = iou >= iou_threshold
        p, q, iou = p[hit], q[hit] - n_prev, iou[hit]
        sel = np.lexsort((p, -iou, q))  # per new row: best IoU, then the earliest previous row
        q, p, iou = q[sel], p[sel], iou[sel]
        first = np.r_[True, q[1:] != q[:-1]] if len(q) else np.zeros(0, bool)
        better = iou[first] > best_iou[q[first]]
        best[q[first][better]], best_iou[q[first][better]] = p[first][better], iou[first][better]
    return best, best_iou


def _absorb_into_previous(prev: pa.Table, new: pa.Table, target: np.ndarray) -> pa.Table:
    """``prev`` with the matched ``new`` rows (``target`` >= 0) added to its lists."""
    q = np.flatnonzero(target >= 0)
    touched = unique(target[q])
    if len(touched) == 0:
        return prev
    local = {}
    sub = prev.take(pa.array(touched))
    matched = new.take(pa.array(q))
    tpos = np.searchsorted(touched, target[q])
    for column in ("absorbed_ids", "seen_by"):
        own, mine = sub[column].combine_chunks(), matched[column].combine_chunks()
        owner = [pc.list_parent_indices(own).to_numpy(), tpos[pc.list_parent_indices(mine).to_numpy()]]
        values = [pc.list_flatten(own), pc.list_flatten(mine)]
        if column == "absorbed_ids":
            owner.append(tpos)
            values.append(matched["annotation_id"].combine_chunks())
        local[column] = _lists(np.concatenate(owner), pa.concat_arrays(values), len(touched),
                               distinct=column == "seen_by")
    index = np.arange(prev.num_rows)
    index[touched] = prev.num_rows + np.arange(len(touched))
    out = prev
    for column, lists in local.items():
        out = out.set_column(out.schema.get_field_index(column), column,
                             pa.concat_arrays([prev[column].combine_chunks(), lists]).take(pa.array(index)))
    seen = out["seen_by"]
    return out.set_column(out.schema.get_field_index("agreement"), "agreement",
                          pc.list_value_length(seen).cast(pa.int32()))


def merge_with_previous(new: pa.Table, prev: pa.Table, config: CurationConfig
                        ) -> tuple[pa.Table, np.ndarray, pa.Array, pa.Array]:
    """Merge this round's survivors into the previous curated set.

    Returns the curated table, ``merged`` (bool per row of ``new``: it merged into a previous
    row instead of being added), the reason per row of ``new`` (null where not merged) and
    the ids of the previous rows the merged rows went into (one per merged row)."""
    is_caption = pc.fill_null(pc.equal(new["kind"], "caption"), False).to_numpy(zero_copy_only=False)
    target = np.full(new.num_rows, -1, np.int64)
    iou = np.zeros(new.num_rows)
    caps = np.flatnonzero(is_caption)
    target[caps], iou[caps] = match_previous(new.take(pa.array(caps)), prev, config.merge.iou_threshold)
    # new phrases whose caption merged point at the previous caption
    moved = pc.index_in(new["parent_id"], value_set=new["annotation_id"].take(pa.array(caps[target[caps] >= 0])))
    prev_caption = prev["annotation_id"].take(pa.array(target[caps][target[caps] >= 0]))
    new = new.set_column(new.schema.get_field_index("parent_id"), "parent_id",
                         pc.coalesce(pc.take(prev_caption, moved), new["parent_id"]))
    rest = np.flatnonzero(~is_caption)
    target[rest], iou[rest] = match_previous(new.take(pa.array(rest)), prev, config.merge.iou_threshold)
    merged = target >= 0
    reason = reason_where(merged, f"merged into a previous round's row (IoU >= {config.merge.iou_threshold} "
                                  "or same text)")
    into = prev["annotation_id"].take(pa.array(target[merged]))
    kept_prev = conform(_absorb_into_previous(prev, new, target), CURATED)
    curated = pa.concat_tables([kept_prev, conform(new.take(pa.array(np.flatnonzero(~merged))), CURATED)])
    return curated, merged, reason, into


def _encoded(column: pa.ChunkedArray) -> pa.DictionaryArray:
    """``column`` as one dictionary array (an encoded column only unifies its chunks' dictionaries)."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type.value_type).dictionary_encode()


def _working_table(raw: pa.Table, images: pa.Table, pool: ThreadPoolExecutor
                   ) -> tuple[pa.Table, tuple[np.ndarray, list[str]]]:
    """The narrow table the filters see: :data:`CURATION_COLUMNS` with the
    :data:`CATEGORICAL_COLUMNS` and ``text`` dictionary-encoded, plus ``label`` (a top-level
    region's raw text) and :data:`IMAGE_INDEX` (image ids hashed once, here); and the producer
    of every row (code per row, distinct ``source@source_version`` tags) for the agreement lists."""
    encoded = [c for c in CURATION_COLUMNS if c in CATEGORICAL_COLUMNS]
    extra = ["text", "source_version"]
    jobs = {c: pool.submit(_encoded, raw[c]) for c in [*encoded, *extra]}  # on workers while this thread
    built = {"bbox": as_fixed_size(raw["bbox"], 4), "quad": as_fixed_size(raw["quad"], 8)}
    index = image_index_column(raw, images)  # converts the boxes and hashes the image ids
    columns = {c: job.result() for c, job in jobs.items()}
    text, version = columns.pop("text"), columns.pop("source_version")
    is_label = equals(columns["kind"], "region") & ~valid(raw["parent_id"]) & valid(text)  # a top-level region's text
    codes = (pc.fill_null(text.indices, 0) if text.null_count else text.indices).to_numpy(zero_copy_only=False)
    label = pa.DictionaryArray.from_arrays(with_nulls(codes.astype(np.int32, copy=False), ~is_label), text.dictionary)
    built["text"] = text
    work = pa.Table.from_arrays([columns.get(c, built.get(c, raw[c])) for c in CURATION_COLUMNS] + [label],
                                names=[*CURATION_COLUMNS, "label"])
    (source, sources), (version, versions) = dictionary(columns["source"]), dictionary(version)
    pair = source * len(versions) + version
    pairs = np.flatnonzero(np.bincount(pair, minlength=1))  # tags are built for the distinct pairs only
    code_of = np.zeros(len(sources) * len(versions) or 1, np.int64)
    code_of[pairs] = np.arange(len(pairs))
    tags = [f"{sources[p // len(versions)]}@{versions[p % len(versions)]}" for p in pairs]
    producer = (code_of[pair], tags)
    return work.append_column(IMAGE_INDEX, index), producer


def _scatter(parts: list[tuple[np.ndarray, pa.Array | pa.ChunkedArray, np.ndarray | None]], n: int
             ) -> pa.Array | pa.ChunkedArray:
    """A string column of ``n`` rows, null except where a part ``(rows, values, index)`` puts
    ``values[index[j]]`` (``values[j]`` when ``index`` is None) at row ``rows[j]``: one take
    over all parts."""
    where = np.full(n, -1, np.int64)
    chunks, offset = [], 0
    for rows, values, index in parts:
        chunks += [c.cast(pa.string()) for c in (values.chunks if isinstance(values, pa.ChunkedArray) else [values])]
        where[rows] = offset + (np.arange(len(rows)) if index is None else index)
        offset += len(values)
    flat = pa.chunked_array([c for c in chunks if len(c)] or [pa.array([], pa.string())], pa.string())
    return flat.take(with_nulls(where, where < 0))


def _image_ids(index: np.ndarray, images: pa.Table, raw_ids: pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    """The image ids of the raw ``rows`` whose :data:`IMAGE_INDEX` is ``index``: gathered from
    the (small, cache-resident) images table where known, from the raw rows otherwise."""
    known = index >= 0
    if known.all():
        return images["image_id"].take(pa.array(index))
    unknown = np.flatnonzero(~known)
    return _scatter([(np.flatnonzero(known), images["image_id"], index[known]), (unknown, raw_ids, rows[unknown])],
                    len(index))


def _scatter_reasons(parts: list[tuple[np.ndarray, pa.Array]], n: int) -> pa.DictionaryArray:
    """The reason column of ``n`` rows, null except where a part ``(rows, reasons)`` puts
    ``reasons[j]`` at row ``rows[j]``; dictionary-encoded from the parts' own dictionaries
    (filters give one-text reasons as dictionaries), so no text is hashed per row."""
    codes = np.full(n, -1, np.int32)  # into the parts' dictionaries, concatenated
    texts, offset = [], 0
    for rows, reasons in parts:
        reasons = reasons.combine_chunks() if isinstance(reasons, pa.ChunkedArray) else reasons
        encoded = reasons if pa.types.is_dictionary(reasons.type) else pc.dictionary_encode(reasons.cast(pa.string()))
        index = pc.fill_null(encoded.indices, -1 - offset).to_numpy(zero_copy_only=False).astype(np.int32)
        codes[rows] = index + offset
        texts.append(encoded.dictionary.cast(pa.string()))
        offset += len(encoded.dictionary)
    distinct = pc.dictionary_encode(pa.concat_arrays(texts) if texts else pa.array([], pa.string()))
    remap = distinct.indices.to_numpy(zero_copy_only=False).astype(np.int32)  # the same text of two rules: one entry
    if not np.array_equal(remap, np.arange(len(remap))):
        codes = np.r_[remap, np.int32(-1)][codes]  # code -1 picks the appended -1
    return pa.DictionaryArray.from_arrays(with_nulls(codes, codes < 0), distinct.dictionary)


def curate_tables(
    raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, round_: int,
    on_curated: Callable[[pa.Table], None] | None = None, partitions: int | None = None,
    on_trails: Callable[[pa.Table], None] | None = None, decoded: bool = True,
) -> tuple[pa.Table, pa.Table]:
    """Curate the raw annotations of round ``round_`` -> (curated :data:`CURATED`, decision
    trails :data:`DECISION_TRAILS`, one row per raw row; ``expand_trails`` gives the long form).

    ``images``: ``image_id, width, height`` of the images with status ok (upright pixels).
    ``previous``: the curated table of round ``round_ - 1`` or None. ``on_curated``: called
    with the curated table as soon as it is final and its rows are accounted for (new rows +
    dropped rows = raw rows), its low-cardinality columns possibly still dictionary-encoded
    (values as in :data:`CURATED`: it is the table to write); ``on_trails``: called (on a
    worker thread) with the trails as soon as they are final: right after the rules when there
    is no merge, so ``curate_round`` writes them while the curated set is assembled.
    ``decoded=False``: the returned curated table may keep low-cardinality columns
    dictionary-encoded (values as in :data:`CURATED`; for callers that only write or count it).
    ``partitions``: image partitions the rules run in side by side (default: one per core,
    at least ``engine.curate.rules.PARTITION_MIN_ROWS`` rows each); the result is the same
    for any count. The working table shrinks with ``take`` (Arrow's ``filter`` is ~3x slower
    on the string and list columns); every rule's outcome is kept as numpy arrays over the raw rows.
    """
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        count = partition_count(raw.num_rows, workers) if partitions is None else partitions
        curated, trails = _curate(raw, previous, images, config, round_, pool, on_curated, on_trails, count)
        return (conform(curated, CURATED) if decoded else curated), trails


def _curate(raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, round_: int,
            pool: ThreadPoolExecutor, on_curated: Callable[[pa.Table], None] | None,
            on_trails: Callable[[pa.Table], None] | None, partitions: int) -> tuple[pa.Table, pa.Table]:
    raw = conform(raw, ANNOTATIONS, keep_dictionaries=True)
    # the ids are gathered by every partition take and for the absorbed rows' lists: from one
    # chunk, not from one per file (the trails reference absorbers by position, not by id)
    ids = raw["annotation_id"].combine_chunks()
    raw = raw.set_column(raw.schema.get_field_index("annotation_id"), "annotation_id", ids)
    previous = conform(previous, CURATED) if previous is not None else None
    n = raw.num_rows
    merging = previous is not None and config.merge.enabled
    rule_names = [*config.rules, *([MERGE_RULE] if merging else [])]

    ctx = FilterContext(images=conform(images, IMAGE_SIZES).combine_chunks(), previous=previous,
                        text_metrics=metrics_function(config.text.pipeline, config.text.batch_size))
    # the narrow working table: image ids are hashed once here, the filters read the index
    work, producer = _working_table(raw, ctx.images, pool)
    index = work[IMAGE_INDEX].to_numpy()
    work, gidx, outcomes = run_rules(work, config.rules, config, ctx, index, pool, partitions)
    judged, dropped_by, into, agrees = outcomes.judged, outcomes.dropped_by, outcomes.into, outcomes.agrees
    drops = [(np.zeros(0, np.int64), pa.array([], pa.string())), *outcomes.drops]
    # rows merged into the previous round's (never also absorbed by a rule): set by the merge
    merged_into: list[tuple[np.ndarray, pa.Array, np.ndarray | None]] = []

    def finish_trails() -> pa.Table:  # one job: a worker never waits here on another worker's result
        trails = build_trails(raw["annotation_id"], round_, rule_names, judged, dropped_by,
                              _scatter_reasons(drops, n), into, _scatter(merged_into, n) if merged_into else None)
        if on_trails is not None:
            on_trails(trails)
        return trails

    if not merging:  # the trails are final: built (and written) while the curated set is assembled
        _check_accounting(len(gidx), dropped_by, n)
        trails_job = pool.submit(finish_trails)
    # a few cheap narrow columns: taken on this thread, not queued behind the trails job
    rest = take_table(raw.select([c for c in ANNOTATIONS.names if c not in work.column_names and c != "image_id"]),
                      gidx, None)
    rest = rest.append_column("image_id", _image_ids(work[IMAGE_INDEX].to_numpy(), ctx.images, raw["image_id"], gidx))
    survivors = pa.Table.from_arrays(
        [work[c] if c in work.column_names else rest[c] for c in ANNOTATIONS.names]
        + [work["label"]], names=[*ANNOTATIONS.names, "label"])
    # without a previous set the low-cardinality columns stay dictionary-encoded for the writer
    # (Parquet takes the dictionaries as they are; readers get strings: the type is string)
    curated = conform(_agreement(survivors, gidx, raw, into, agrees, producer), CURATED,
                      keep_dictionaries=previous is None)
    if merging:
        curated, merged, reason, into_previous = merge_with_previous(curated, previous, config)
        judged[gidx] |= 1 << (len(rule_names) - 1)
        dropped_by[gidx[merged]] = len(rule_names) - 1
        drops.append((gidx[merged], reason.filter(pa.array(merged))))
        merged_into.append((gidx[merged], into_previous, None))
    elif previous is not None:  # merge off: carry the previous set over unchanged beside the new rows
        curated = pa.concat_tables([previous, curated])
    _check_accounting(int(pc.sum(pc.equal(curated["round"], round_)).as_py() or 0) if curated.num_rows else 0,
                      dropped_by, n)
    if on_curated is not None:
        on_curated(curated)
    return curated, (trails_job.result() if not merging else finish_trails())


def _check_accounting(new_rows: int, dropped_by: np.ndarray, n: int) -> None:
    """Every raw row is kept as a new row or dropped, never both nor neither."""
    dropped_rows = int((dropped_by >= 0).sum())
    if new_rows + dropped_rows != n:
        raise RuntimeError(f"curation lost rows: {new_rows} kept + {dropped_rows} dropped != {n} input")


def curate_round(root: DataRoot, round_: int, config: CurationConfig, rows_per_part: int = 1_000_000) -> dict[str, Any]:
    """Curate round ``round_`` of ``root``: read raw + previous curated + image sizes, write
    ``curated/round=R/part-*.parquet`` and ``decisions/round=R/part-*.parquet`` (decision
    trails) and, last, ``curated/round=R/_summary.json``. Returns the summary (counts per rule,
    timings)."""
    import json

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as writer:  # both datasets are written while curation goes on
        image_sizes = writer.submit(read_image_sizes, root)  # DuckDB reads them while pyarrow reads the shards
        raw = read_raw(root, round_)
        previous = read_curated(root, round_ - 1)
        jobs: dict[str, Future] = {}

        def write(name: str, folder: Path) -> Callable[[pa.Table], None]:
            def submit(table: pa.Table) -> None:
                jobs[name] = writer.submit(write_datasets, [(table, folder)], rows_per_part)
            return submit

        curated, trails = curate_tables(raw, previous, image_sizes.result(), config, round_,
                                        write("curated", root.curated(round_)),
                                        on_trails=write("decisions", root.decisions(round_)), decoded=False)
        dropped_rows = trails.num_rows - trails["dropped_by"].null_count  # counted while the parts are written
        new_rows = raw.num_rows - dropped_rows  # curate_tables checked that every raw row is accounted for
        judged = judged_counts(trails)
        summary = {
            "round": round_,
            "input_rows": raw.num_rows,
            "kept_new_rows": new_rows,
            "dropped_rows": dropped_rows,
            "carried_rows": previous.num_rows if previous is not None else 0,
            "curated_rows": curated.num_rows,
            "dropped_by_rule": value_counts(trails["dropped_by"]),
            "judged_by_rule": judged,
            "decision_rows": sum(judged.values()),
        }
        (decision_parts,), (curated_parts,) = jobs["decisions"].result(), jobs["curated"].result()
    summary["decision_parts"], summary["curated_parts"] = len(decision_parts), len(curated_parts)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_text_atomic(json.dumps(summary, indent=2), root.curated(round_) / "_summary.json")
    return summary
