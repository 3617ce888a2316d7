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

Known limit: a region-text candidate whose parent region lives only in the previous curated
set is dropped as an orphan (a merged region does take the description and mask its absorbed
new box brought, when it had none: ``engine.curate.absorbed_details``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.agreement import agreement_columns
from engine.curate.calibration import NEW_BOX_KEY, calibrated_thresholds
from engine.curate.config import CurationConfig
from engine.curate.merge import MERGE_RULE, merge_with_previous
from engine.curate.parquet_io import (
    IMAGE_SIZES,
    conform,
    read_curated,
    read_image_sizes,
    read_raw,
    write_datasets,
)
from engine.curate.review_carry import carried_trails, replaced_previous
from engine.curate.review_state import review_state
from engine.curate.rules import partition_count, run_rules, take_table
from engine.curate.text_metrics import metrics_function
from engine.curate.working_table import image_ids_of, plain_rows, scatter_strings, working_table
from filters.base import (
    IMAGE_INDEX,
    FilterContext,
)
from filters.human_review import RULE as HUMAN_REVIEW
from filters.human_review import ReviewState
from storage.arrow_masks import with_nulls
from storage.atomic import write_text_atomic
from storage.decisions import build_trails, judged_counts, value_counts
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, CURATED


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
    calibrated: Mapping[str, float] | None = None, new_box_thresholds: Mapping[str, float] | None = None,
    reviews: ReviewState | None = None,
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
    ``calibrated``: source -> the calibrated score threshold of the checkpoint that produced
    its rows (``FilterContext.calibrated``); ``new_box_thresholds``: source -> the stricter
    threshold its boxes need to be added where no previous curated box is (the merge).
    ``reviews``: the people's verdicts that bind this round (``engine.curate.review_state``): the
    ``human_review`` rule runs (right after ``image`` when the config does not list it), the
    rows it keeps skip every later rule and the merge, and previous rows a fresh review
    replaces leave the curated set with a trail each (numbered after the raw rows').
    """
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        count = partition_count(raw.num_rows, workers) if partitions is None else partitions
        curated, trails = _curate(raw, previous, images, config, round_, pool, on_curated, on_trails, count,
                                  dict(calibrated or {}), dict(new_box_thresholds or {}), reviews or ReviewState())
        return (conform(curated, CURATED) if decoded else curated), trails


def _curate(raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, round_: int,
            pool: ThreadPoolExecutor, on_curated: Callable[[pa.Table], None] | None,
            on_trails: Callable[[pa.Table], None] | None, partitions: int, calibrated: dict[str, float],
            new_box_thresholds: dict[str, float], reviews: ReviewState) -> tuple[pa.Table, pa.Table]:
    raw = conform(raw, ANNOTATIONS, keep_dictionaries=True)
    # the ids are gathered by every partition take and for the absorbed rows' lists: from one
    # chunk, not from one per file (the trails reference absorbers by position, not by id)
    ids = raw["annotation_id"].combine_chunks()
    raw = raw.set_column(raw.schema.get_field_index("annotation_id"), "annotation_id", ids)
    previous = conform(previous, CURATED) if previous is not None else None
    n = raw.num_rows
    previous, left = replaced_previous(previous, reviews)
    merging = previous is not None and config.merge.enabled
    rules = reviewed_rules(config.rules, reviews)
    rule_names = [*rules, *([MERGE_RULE] if merging else [])]

    ctx = FilterContext(images=conform(images, IMAGE_SIZES).combine_chunks(), previous=previous,
                        text_metrics=metrics_function(config.text.pipeline, config.text.batch_size),
                        calibrated=calibrated, reviews=reviews)
    # the narrow working table: image ids are hashed once here, the filters read the index
    work, producer = working_table(raw, ctx.images, pool)
    index = work[IMAGE_INDEX].to_numpy()
    images = ctx.images

    def plain(table: pa.Table, rows: np.ndarray) -> pa.Table:
        return plain_rows(table, rows, raw, images)

    work, gidx, outcomes = run_rules(work, rules, config, ctx, index, pool, partitions, plain)
    judged, dropped_by, into, agrees = outcomes.judged, outcomes.dropped_by, outcomes.into, outcomes.agrees
    drops = [(np.zeros(0, np.int64), pa.array([], pa.string())), *outcomes.drops]
    # rows merged into the previous round's (never also absorbed by a rule): set by the merge
    merged_into: list[tuple[np.ndarray, pa.Array, np.ndarray | None]] = []

    def finish_trails() -> pa.Table:  # one job: a worker never waits here on another worker's result
        trails = build_trails(raw["annotation_id"], round_, rule_names, judged, dropped_by,
                              _scatter_reasons(drops, n), into, scatter_strings(merged_into, n) if merged_into else None)
        if left:
            trails = pa.concat_tables([trails, carried_trails(left, round_, n)])
        if on_trails is not None:
            on_trails(trails)
        return trails

    if not merging:  # the trails are final: built (and written) while the curated set is assembled
        _check_accounting(len(gidx), dropped_by, n)
        trails_job = pool.submit(finish_trails)
    # a few cheap narrow columns: taken on this thread, not queued behind the trails job
    rest = take_table(raw.select([c for c in ANNOTATIONS.names if c not in work.column_names and c != "image_id"]),
                      gidx, None)
    rest = rest.append_column("image_id", image_ids_of(work[IMAGE_INDEX].to_numpy(), ctx.images, raw["image_id"], gidx))
    survivors = pa.Table.from_arrays(
        [work[c] if c in work.column_names else rest[c] for c in ANNOTATIONS.names]
        + [work["label"]], names=[*ANNOTATIONS.names, "label"])
    # without a previous set the low-cardinality columns stay dictionary-encoded for the writer
    # (Parquet takes the dictionaries as they are; readers get strings: the type is string)
    curated = conform(agreement_columns(survivors, gidx, raw, into, agrees, producer), CURATED,
                      keep_dictionaries=previous is None)
    if merging:
        protected = outcomes.protected[gidx]
        curated, merged, reason, into_previous = merge_with_previous(curated, previous, config, new_box_thresholds,
                                                                     protected)
        judged[gidx[~protected]] |= 1 << (len(rule_names) - 1)  # people's rows skip the merge
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


def reviewed_rules(rules: tuple[str, ...], reviews: ReviewState) -> tuple[str, ...]:
    """``rules`` with ``human_review`` right after ``image`` (first without it) when reviews bind
    the round and the config does not list the rule itself."""
    if not reviews or HUMAN_REVIEW in rules:
        return rules
    at = rules.index("image") + 1 if "image" in rules else 0
    return (*rules[:at], HUMAN_REVIEW, *rules[at:])


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

        reviews = review_state(root, round_)
        calibrated = calibrated_thresholds(root, raw)
        new_box = calibrated_thresholds(root, raw, NEW_BOX_KEY)
        curated, trails = curate_tables(raw, previous, image_sizes.result(), config, round_,
                                        write("curated", root.curated(round_)),
                                        on_trails=write("decisions", root.decisions(round_)), decoded=False,
                                        calibrated=calibrated, new_box_thresholds=new_box, reviews=reviews)
        carried_left = trails.num_rows - raw.num_rows  # previous rows a fresh review replaced (trails after the raw rows')
        dropped_rows = trails.num_rows - trails["dropped_by"].null_count - carried_left  # while the parts are written
        new_rows = raw.num_rows - dropped_rows  # curate_tables checked that every raw row is accounted for
        judged = judged_counts(trails)
        summary = {
            "round": round_,
            "input_rows": raw.num_rows,
            "kept_new_rows": new_rows,
            "dropped_rows": dropped_rows,
            "carried_rows": previous.num_rows if previous is not None else 0,
            "carried_rows_replaced_by_review": carried_left,
            "reviews": sorted(set(reviews.latest.values())),
            "curated_rows": curated.num_rows,
            "dropped_by_rule": value_counts(trails["dropped_by"]),
            "judged_by_rule": judged,
            "decision_rows": sum(judged.values()),
            "calibrated_thresholds": calibrated,
            "new_box_thresholds": new_box,
        }
        (decision_parts,), (curated_parts,) = jobs["decisions"].result(), jobs["curated"].result()
    summary["decision_parts"], summary["curated_parts"] = len(decision_parts), len(curated_parts)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_text_atomic(json.dumps(summary, indent=2), root.curated(round_) / "_summary.json")
    return summary
