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

A round too large for one process is curated in partitions of whole image shards through
the same ``curate_tables`` (``engine.curate.partitioned``), with the same result.

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
from engine.curate.calibration import NEW_BOX_KEY, applied, producers, recorded_thresholds
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
from engine.curate.rules import partition_count, prepare_parts, run_rules, take_table
from engine.curate.summary import round_summary, summary_counts
from engine.curate.text_metrics import metrics_function
from engine.curate.working_table import image_ids_of, plain_rows, scatter_reasons, scatter_strings, working_table
from filters.base import IMAGE_INDEX, FilterContext, filter_spec
from filters.human_review import RULE as HUMAN_REVIEW
from filters.human_review import ReviewState
from storage.atomic import remove_path, write_text_atomic
from storage.decisions import build_trails
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, CURATED


def curate_tables(
    raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, round_: int,
    on_curated: Callable[[pa.Table], None] | None = None, partitions: int | None = None,
    on_trails: Callable[[pa.Table], None] | None = None, decoded: bool = True,
    calibrated: Mapping[str, float] | None = None, new_box_thresholds: Mapping[str, float] | None = None,
    reviews: ReviewState | None = None, prepared: Mapping[str, Any] | None = None,
    label_vocabulary: set[str] | None = None,
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
    replaces leave the curated set with a trail each (numbered after the raw rows', by their
    position in ``previous``). ``prepared``: rule -> the state its ``combine`` hook made over a
    whole round of which these tables are one part (:func:`prepare_rule_parts`), so a round
    curated in parts (``engine.curate.partitioned``) decides as it would in one piece.
    ``label_vocabulary``: the normalised labels of the whole previous curated set's object boxes
    when ``previous`` is one part of it (the merge's ``relabel_known_only`` and
    ``new_box_known_labels_only``); None: ``previous``'s own.
    """
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        count = partition_count(raw.num_rows, workers) if partitions is None else partitions
        curated, trails = _curate(raw, previous, images, config, round_, pool, on_curated, on_trails, count,
                                  dict(calibrated or {}), dict(new_box_thresholds or {}), reviews or ReviewState(),
                                  dict(prepared or {}), label_vocabulary)
        return (conform(curated, CURATED) if decoded else curated), trails


def hooked_rules(config: CurationConfig, reviews: ReviewState | None = None) -> tuple[str, ...]:
    """The rules of a round's curation, in order, whose decisions need a state over every image
    (a ``combine`` hook: ``nms_cross``'s rank reference): what a round curated in parts prepares first."""
    return tuple(r for r in reviewed_rules(config.rules, reviews or ReviewState()) if filter_spec(r).combine is not None)


def prepare_rule_parts(raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, rule: str,
                       calibrated: Mapping[str, float] | None = None, reviews: ReviewState | None = None,
                       prepared: Mapping[str, Any] | None = None) -> list:
    """``rule``'s ``prepare`` parts over these tables' rows alive when it runs (the rules
    before it run as :func:`curate_tables` runs them, with the ``prepared`` states of earlier
    hooked rules); ``rule``'s ``combine`` over the parts of every part of a round is its
    ``prepared`` state for :func:`curate_tables`."""
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        raw, _, _, rules, ctx, work, _, plain = _setup(raw, previous, images, config, pool, dict(calibrated or {}),
                                                       reviews or ReviewState())
        return prepare_parts(work, rules, config, ctx, work[IMAGE_INDEX].to_numpy(), pool,
                             partition_count(raw.num_rows, workers), plain, rule, prepared)


def _setup(raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, pool: ThreadPoolExecutor,
           calibrated: dict[str, float], reviews: ReviewState) -> tuple:
    """What the rules need: the conformed raw rows, the previous set less the rows a fresh review
    replaces (and those rows), the rules, their context, the working table, the producers and
    the plain-rows function."""
    raw = conform(raw, ANNOTATIONS, keep_dictionaries=True)
    # the ids are gathered by every partition take and for the absorbed rows' lists: from one
    # chunk, not from one per file (the trails reference absorbers by position, not by id)
    ids = raw["annotation_id"].combine_chunks()
    raw = raw.set_column(raw.schema.get_field_index("annotation_id"), "annotation_id", ids)
    previous = conform(previous, CURATED) if previous is not None else None
    previous, left = replaced_previous(previous, reviews)
    ctx = FilterContext(images=conform(images, IMAGE_SIZES).combine_chunks(), previous=previous,
                        text_metrics=metrics_function(config.text.pipeline, config.text.batch_size),
                        calibrated=calibrated, reviews=reviews)
    # the narrow working table: image ids are hashed once here, the filters read the index
    work, producer = working_table(raw, ctx.images, pool)

    def plain(table: pa.Table, rows: np.ndarray) -> pa.Table:
        return plain_rows(table, rows, raw, ctx.images)

    return raw, previous, left, reviewed_rules(config.rules, reviews), ctx, work, producer, plain


def _curate(raw: pa.Table, previous: pa.Table | None, images: pa.Table, config: CurationConfig, round_: int,
            pool: ThreadPoolExecutor, on_curated: Callable[[pa.Table], None] | None,
            on_trails: Callable[[pa.Table], None] | None, partitions: int, calibrated: dict[str, float],
            new_box_thresholds: dict[str, float], reviews: ReviewState, prepared: dict[str, Any],
            label_vocabulary: set[str] | None = None) -> tuple[pa.Table, pa.Table]:
    raw, previous, left, rules, ctx, work, producer, plain = _setup(raw, previous, images, config, pool, calibrated,
                                                                    reviews)
    n = raw.num_rows
    merging = previous is not None and config.merge.enabled
    rule_names = [*rules, *([MERGE_RULE] if merging else [])]
    index = work[IMAGE_INDEX].to_numpy()
    work, gidx, outcomes = run_rules(work, rules, config, ctx, index, pool, partitions, plain, prepared)
    judged, dropped_by, into, agrees = outcomes.judged, outcomes.dropped_by, outcomes.into, outcomes.agrees
    drops = [(np.zeros(0, np.int64), pa.array([], pa.string())), *outcomes.drops]
    # rows merged into the previous round's (never also absorbed by a rule): set by the merge
    merged_into: list[tuple[np.ndarray, pa.Array, np.ndarray | None]] = []

    def finish_trails() -> pa.Table:  # one job: a worker never waits here on another worker's result
        trails = build_trails(raw["annotation_id"], round_, rule_names, judged, dropped_by,
                              scatter_reasons(drops, n), into, scatter_strings(merged_into, n) if merged_into else None)
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
                                                                     protected, label_vocabulary)
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
    trails) and, last, ``curated/round=R/_summary.json`` (removed first: a run killed while it
    writes leaves parts but no summary). Returns the summary (counts per rule, timings)."""
    import json

    started = time.perf_counter()
    (root.curated(round_) / "_summary.json").unlink(missing_ok=True)  # present only beside a complete set
    with ThreadPoolExecutor(max_workers=2) as writer:  # both datasets are written while curation goes on
        image_sizes = writer.submit(read_image_sizes, root)  # DuckDB reads them while pyarrow reads the shards
        recorded = writer.submit(recorded_thresholds, root)  # and the catalog's calibrated thresholds
        raw = read_raw(root, round_)
        previous = read_curated(root, round_ - 1)
        jobs: dict[str, Future] = {}

        def write(name: str, folder: Path) -> Callable[[pa.Table], None]:
            def submit(table: pa.Table) -> None:
                jobs[name] = writer.submit(write_datasets, [(table, folder)], rows_per_part)
            return submit

        reviews = review_state(root, round_)
        producing = producers(raw)
        calibrated = applied(recorded.result(), producing)
        new_box = applied(recorded.result(), producing, NEW_BOX_KEY)
        curated, trails = curate_tables(raw, previous, image_sizes.result(), config, round_,
                                        write("curated", root.curated(round_)),
                                        on_trails=write("decisions", root.decisions(round_)), decoded=False,
                                        calibrated=calibrated, new_box_thresholds=new_box, reviews=reviews)
        counts = summary_counts(raw.num_rows, previous.num_rows if previous is not None else 0, curated.num_rows,
                                trails)  # while the parts are written
        summary = round_summary(round_, counts, reviews, calibrated, new_box)
        (decision_parts,), (curated_parts,) = jobs["decisions"].result(), jobs["curated"].result()
    summary["decision_parts"], summary["curated_parts"] = len(decision_parts), len(curated_parts)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_text_atomic(json.dumps(summary, indent=2), root.curated(round_) / "_summary.json")
    remove_path(root.curation_work(round_), ignore_errors=True)  # what a killed partitioned run left
    return summary
