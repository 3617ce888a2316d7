"""Fusion of object boxes across rounds: agreeing sources refine a curated box and may correct
its label.

An object region of this round (top-level ``region`` of type ``object`` with a box) that
overlaps a previous curated object region of the same image with IoU >= ``merge.fuse_iou``,
whatever its label, is *evidence* for that row when its producer (``source@source_version``)
is not yet among the row's ``seen_by`` (the same checkpoint re-emitting a box it gave before
is not new evidence; a new checkpoint of the model is). Of each producer only the best
overlapping box counts. For every previous row with evidence:

* box: the weighted mean of the previous box (weight: its ``score``) and the evidence
  boxes (weight: their ``score``), as weighted box fusion does; pixels of the upright image;
* label: the normalised label with the largest summed weight (the previous label wins ties);
  with ``merge.correct_labels`` off the previous label stays;
* score: ``1 - prod(1 - w)`` over the previous row and the evidence that agree with the
  chosen label (each ``w`` clipped to [0, 0.999]), so agreement raises confidence.

A box that overlaps no previous box that much may still join the previous box of the same
label it overlaps most at IoU >= ``merge.fuse_iou_same_label`` when no other box of its
producer claims that box (:func:`match_lone_same_label`).

Every overlapping row of this round is merged into the previous row (recorded as a decision
with the IoU, and for evidence whether it refined the box or corrected the label); rows that
overlap nothing stay new rows. Scores are in 0..1; a null score weighs 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.curate.matching import best_previous_match
from filters.base import group_codes, normalize_text, normalized_codes, valid
from storage.geometry import boxes_from_arrow, boxes_to_arrow, pairwise_iou

#: a box moved by less than this (pixels, any side) counts as unchanged
BOX_TOLERANCE = 1e-3


def fusable(table: pa.Table) -> np.ndarray:
    """Bool per row: a top-level object region with a box (the rows fusion works on)."""
    if table.num_rows == 0:
        return np.zeros(0, bool)
    region = pc.fill_null(pc.equal(table["kind"], "region"), False)
    obj = pc.fill_null(pc.equal(table["region_type"], "object"), False)
    mask = pc.and_(region, obj).to_numpy(zero_copy_only=False)
    return mask & ~valid(table["parent_id"]) & valid(table["bbox"])


def match_any_label(new: pa.Table, prev: pa.Table, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``new``: the row of ``prev`` of the same image it overlaps most with IoU >=
    ``iou_threshold`` (-1: none) and that IoU; labels are not compared."""
    both_ids = pa.concat_arrays([_plain(prev["image_id"]), _plain(new["image_id"])])
    codes = group_codes(both_ids)
    boxes = np.concatenate([boxes_from_arrow(prev["bbox"]), boxes_from_arrow(new["bbox"])])
    n_prev = prev.num_rows
    return best_previous_match(codes, n_prev, lambda p, q: pairwise_iou(boxes[p], boxes[q]), iou_threshold)


def match_lone_same_label(new: pa.Table, prev: pa.Table, target: np.ndarray, iou: np.ndarray,
                          threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The second, looser match: a row of ``new`` that matched nothing (``target`` -1) joins
    the previous row of the same image and normalised label it overlaps most with IoU >=
    ``threshold``, unless another box of its producer already matched that previous row (a
    second object next to the first, as in a crowd) or a better-overlapping box of its producer
    claims it. A model box and a jittered label of one object often overlap at IoU 0.3..0.5;
    kept apart, one of the two is a duplicate. ``new`` and ``prev`` are the fusable rows;
    returns ``target`` and ``iou`` updated."""
    loose = np.flatnonzero(target < 0)
    if len(loose) == 0 or prev.num_rows == 0:
        return target, iou
    candidates = new.take(pa.array(loose))
    texts = pa.concat_arrays([_label_text(prev), _label_text(candidates)])
    codes = group_codes(pa.concat_arrays([_plain(prev["image_id"]), _plain(candidates["image_id"])]), normalized_codes(texts))
    boxes = np.concatenate([boxes_from_arrow(prev["bbox"]), boxes_from_arrow(candidates["bbox"])])
    local, local_iou = best_previous_match(codes, prev.num_rows, lambda p, q: pairwise_iou(boxes[p], boxes[q]), threshold)
    producer = np.array(_producers(new), dtype=object)
    claimed = {(int(t), producer[i]) for i, t in enumerate(target) if t >= 0}
    found = np.flatnonzero(local >= 0)
    order = found[np.lexsort((found, -local_iou[found]))]  # best overlap first
    target, iou = target.copy(), iou.copy()
    for k in order:
        key = (int(local[k]), producer[loose[k]])
        if key not in claimed:
            claimed.add(key)
            target[loose[k]], iou[loose[k]] = local[k], local_iou[k]
    return target, iou


def _plain(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.cast(pa.string())


@dataclass
class Fusion:
    """What fusion changes: ``rows`` (previous rows with evidence) get ``boxes`` (k, 4),
    ``labels`` (text), ``scores``; ``relabelled`` and ``refined`` say which changed;
    ``evidence`` (bool per new row) marks the rows that counted."""

    rows: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray
    relabelled: np.ndarray
    refined: np.ndarray
    evidence: np.ndarray


def normalized_labels(rows: pa.Table) -> list[str | None]:
    """The normalised label (label, else text) of every row of ``rows``."""
    return normalize_text(_label_text(rows)).to_pylist()


def label_vocabulary(rows: pa.Table) -> set[str]:
    """The normalised labels (label, else text) of ``rows``: the labels a correction may move a box to."""
    return {t for t in normalized_labels(rows) if t is not None}


def file_label_vocabulary(paths: list[Path], batch_rows: int = 65_536) -> set[str]:
    """:func:`label_vocabulary` of the object boxes (:func:`fusable`) in the curated Parquet
    files ``paths``, read a batch of ``batch_rows`` rows at a time (memory bounded by the batch)."""
    vocabulary: set[str] = set()
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_rows, columns=list(_VOCABULARY_COLUMNS)):
            rows = pa.Table.from_batches([batch])
            vocabulary |= label_vocabulary(rows.filter(pa.array(fusable(rows))))
    return vocabulary


#: the columns :func:`file_label_vocabulary` reads
_VOCABULARY_COLUMNS = ("kind", "region_type", "parent_id", "bbox", "label", "text")


def fuse(new: pa.Table, prev: pa.Table, target: np.ndarray, iou: np.ndarray, correct_labels: bool,
         vocabulary: set[str] | None = None) -> Fusion:
    """Fuse the ``new`` rows matched to ``prev`` rows (``target[i]`` >= 0, with IoU
    ``iou[i]``) into them; with ``vocabulary`` (normalised labels), a label vote won by a label
    outside it leaves the previous label in place."""
    q = np.flatnonzero(target >= 0)
    producer = _producers(new.take(pa.array(q)))
    seen = prev["seen_by"].take(pa.array(target[q])).to_pylist()
    fresh = np.array([p not in (s or []) for p, s in zip(producer, seen)], bool)
    q, producer = q[fresh], [p for p, f in zip(producer, fresh) if f]
    if len(q):  # one box per (previous row, producer): the best overlapping one
        key = group_codes(target[q], pa.array(producer, pa.string()))
        order = np.lexsort((q, -iou[q], key))
        q = np.sort(q[order[np.r_[True, key[order][1:] != key[order][:-1]]]])
    evidence = np.zeros(new.num_rows, bool)
    evidence[q] = True
    rows = np.unique(target[q])
    if len(rows) == 0:
        return Fusion(rows, np.zeros((0, 4)), [], np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), evidence)
    # members: each previous row itself, then its evidence
    slot = np.searchsorted(rows, target[q])
    member_slot = np.r_[np.arange(len(rows)), slot]
    prev_part, new_part = prev.take(pa.array(rows)), new.take(pa.array(q))
    boxes = np.concatenate([boxes_from_arrow(prev_part["bbox"]), boxes_from_arrow(new_part["bbox"])])
    weight = np.clip(np.nan_to_num(np.concatenate([_scores(prev_part), _scores(new_part)])), 0.0, 0.999)
    texts = pa.concat_arrays([_label_text(prev_part), _label_text(new_part)])
    label = normalized_codes(texts)
    total = np.bincount(member_slot, weight, len(rows))
    fused = np.stack([np.bincount(member_slot, weight * boxes[:, c], len(rows)) for c in range(4)], axis=1)
    own = boxes[: len(rows)]
    fused = np.where(total[:, None] > 0, fused / np.maximum(total, 1e-12)[:, None], own)
    # label vote: summed weight per (row, label); the previous label wins ties
    pair = group_codes(member_slot, label)
    votes = np.bincount(pair, weight)
    vote = votes[pair]
    order = np.lexsort((np.arange(len(member_slot)), -vote, member_slot))
    winner_member = order[np.r_[True, member_slot[order][1:] != member_slot[order][:-1]]]
    winner = winner_member[np.argsort(member_slot[winner_member])]
    if not correct_labels:
        winner = np.arange(len(rows))
    elif vocabulary is not None:
        known = np.array([t in vocabulary for t in normalize_text(texts).to_pylist()], bool)
        winner = np.where(known[winner] | (winner < len(rows)), winner, np.arange(len(rows)))
    winning_label = label[winner]
    agree = label == winning_label[member_slot]
    log_miss = np.bincount(member_slot, np.where(agree, np.log1p(-weight), 0.0), len(rows))
    scores = 1.0 - np.exp(log_miss)
    names = texts.to_pylist()
    labels = [names[m] for m in winner]
    relabelled = label[winner] != label[: len(rows)]
    refined = np.abs(fused - own).max(axis=1) > BOX_TOLERANCE
    return Fusion(rows, fused, labels, scores, relabelled, refined, evidence)


def _producers(table: pa.Table) -> list[str]:
    sources, versions = table["source"].to_pylist(), table["source_version"].to_pylist()
    return [f"{s}@{v}" for s, v in zip(sources, versions)]


def _scores(table: pa.Table) -> np.ndarray:
    return pc.fill_null(table["score"], 0.0).to_numpy(zero_copy_only=False).astype(np.float64)


def _label_text(table: pa.Table) -> pa.Array:
    return _plain(pc.coalesce(table["label"], table["text"]))


def apply_fusion(prev: pa.Table, fusion: Fusion) -> pa.Table:
    """``prev`` with the fused boxes, labels (and texts that were the label) and scores."""
    if len(fusion.rows) == 0:
        return prev
    index = pa.array(fusion.rows)
    old_label = _label_text(prev.take(index)).to_pylist()
    old_text = _plain(prev["text"].take(index)).to_pylist()
    texts = [new if text is not None and text.strip().lower() == (old or "").strip().lower() else text
             for new, old, text in zip(fusion.labels, old_label, old_text)]
    updates = {
        "bbox": boxes_to_arrow(fusion.boxes).cast(prev.schema.field("bbox").type),
        "label": pa.array(fusion.labels, pa.string()),
        "text": pa.array(texts, pa.string()),
        "score": pa.array(fusion.scores.astype(np.float32), pa.float32()),
    }
    position = np.full(prev.num_rows, -1, np.int64)
    position[fusion.rows] = np.arange(len(fusion.rows))
    out = prev
    for column, values in updates.items():
        current = _combine(out[column]).cast(values.type)
        take = np.where(position >= 0, prev.num_rows + position, np.arange(prev.num_rows))
        merged = pa.concat_arrays([current, values]).take(pa.array(take))
        out = out.set_column(out.schema.get_field_index(column), column, merged.cast(prev.schema.field(column).type))
    return out


def _combine(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    return column
