"""Merge of a round's survivors with the previous round's curated set.

The curated set of round R is the previous curated set (rows carried over, agreement raised
where a new row matched) plus the new rows that matched nothing. A new row matches a
previous one of the same image, kind, granularity, region type and normalised label/text
when both have no box or their IoU >= ``merge.iou_threshold`` (the best IoU wins); a new
phrase whose parent caption merged points at the previous caption.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.absorbed_details import carry_details
from engine.curate.agreement import string_lists
from engine.curate.config import CurationConfig, MergeConfig
from engine.curate.fusion import (
    Fusion,
    apply_fusion,
    fusable,
    fuse,
    label_vocabulary,
    match_any_label,
    match_lone_same_label,
    normalized_labels,
)
from engine.curate.matching import best_previous_match
from engine.curate.parquet_io import conform
from filters.base import group_codes, normalized_codes, reason_where, unique, valid
from storage.arrow_masks import with_nulls
from storage.geometry import boxes_from_arrow, pairwise_iou
from storage.schema import CURATED

#: the name of the merge in decision trails (it runs after the configured rules)
MERGE_RULE = "merge"


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
    boxes = boxes_from_arrow(both["bbox"])
    has_box = valid(both["bbox"])

    def iou_of(p: np.ndarray, q: np.ndarray) -> np.ndarray:  # rows without a box match only each other
        return np.where(has_box[p] & has_box[q], pairwise_iou(boxes[p], boxes[q]), np.where(has_box[p] | has_box[q], 0, 1))

    return best_previous_match(codes, prev.num_rows, iou_of, iou_threshold)


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
        local[column] = string_lists(np.concatenate(owner), pa.concat_arrays(values), len(touched),
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


def merge_with_previous(new: pa.Table, prev: pa.Table, config: CurationConfig,
                        new_box_thresholds: Mapping[str, float] | None = None, protected: np.ndarray | None = None,
                        vocabulary: set[str] | None = None) -> tuple[pa.Table, np.ndarray, pa.Array, pa.Array]:
    """Merge this round's survivors into the previous curated set.

    Captions, phrases, OCR lines and region-text rows merge into a previous row of the same
    key and label/text (IoU >= ``merge.iou_threshold``); object boxes, with ``merge.fuse``,
    merge into the previous object box they overlap most (IoU >= ``merge.fuse_iou``, any
    label; else, alone, one of the same label at IoU >= ``merge.fuse_iou_same_label``) and
    refine it (``engine.curate.fusion``), giving it the mask and description it lacked
    (``engine.curate.absorbed_details``). An object box that overlaps no previous
    box is added only when its score reaches its source's ``new_box_thresholds`` (the stricter
    threshold calibrated for its checkpoint; sources without one are not held back). Returns
    the curated table, ``merged`` (bool per row of ``new``: it merged into a previous row, or
    was refused, instead of being added), the reason per row of ``new`` (null where neither)
    and the ids of the previous rows the merged rows went into (one per merged row; null for a
    refused one). ``protected`` rows (bool per row of ``new``: people's verdicts) are added as
    they are: they merge into nothing and no threshold holds them back. ``vocabulary``: the
    normalised labels of the whole previous set's object boxes when ``prev`` is a part of it
    (``relabel_known_only``, ``new_box_known_labels_only``; None: ``prev``'s own)."""
    merge = config.merge
    protected = np.zeros(new.num_rows, bool) if protected is None else np.asarray(protected, bool)
    is_caption = pc.fill_null(pc.equal(new["kind"], "caption"), False).to_numpy(zero_copy_only=False) & ~protected
    target = np.full(new.num_rows, -1, np.int64)
    iou = np.zeros(new.num_rows)
    caps = np.flatnonzero(is_caption)
    target[caps], iou[caps] = match_previous(new.take(pa.array(caps)), prev, merge.iou_threshold)
    # new phrases whose caption merged point at the previous caption
    moved = pc.index_in(new["parent_id"], value_set=new["annotation_id"].take(pa.array(caps[target[caps] >= 0])))
    prev_caption = prev["annotation_id"].take(pa.array(target[caps][target[caps] >= 0]))
    new = new.set_column(new.schema.get_field_index("parent_id"), "parent_id",
                         pc.coalesce(pc.take(prev_caption, moved), new["parent_id"]))
    boxes = fusable(new) & merge.fuse & ~protected
    rest = np.flatnonzero(~is_caption & ~boxes & ~protected)
    target[rest], iou[rest] = match_previous(new.take(pa.array(rest)), prev, merge.iou_threshold)
    fused = np.flatnonzero(boxes)
    prev_boxes = np.flatnonzero(fusable(prev))
    new_boxes, old_boxes = new.take(pa.array(fused)), prev.take(pa.array(prev_boxes))
    # one match at the loosest IoU either rule needs: the nearest previous box is the same at any threshold
    loosest = min(merge.fuse_iou, merge.new_box_max_overlap or merge.fuse_iou)
    nearest, nearest_iou = match_any_label(new_boxes, old_boxes, loosest)
    close = nearest_iou >= merge.fuse_iou
    local, iou[fused] = np.where(close, nearest, -1), np.where(close, nearest_iou, -1.0)
    if merge.fuse_iou_same_label is not None and merge.fuse_iou_same_label < merge.fuse_iou:
        local, iou[fused] = match_lone_same_label(new_boxes, old_boxes, local, iou[fused], merge.fuse_iou_same_label)
    target[fused] = np.where(local >= 0, prev_boxes[np.maximum(local, 0)], -1)
    in_fusion = np.where(boxes, target, -1)
    if vocabulary is None:  # the labels a correction or a new box may carry: the previous set's
        vocabulary = label_vocabulary(old_boxes) if merge.uses_label_vocabulary else set()
    fusion = fuse(new, prev, in_fusion, iou, merge.correct_labels, vocabulary if merge.relabel_known_only else None)
    refused, threshold = _below_new_box_threshold(new, boxes & (target < 0), new_box_thresholds or {})
    overlapping, overlap = _over_a_curated_box(nearest_iou, fused, target, merge.new_box_max_overlap, new.num_rows)
    overlapping &= ~refused
    unknown, unknown_label = _unknown_new_labels(new, boxes & (target < 0) & ~refused & ~overlapping,
                                                 vocabulary if merge.new_box_known_labels_only else set())
    merged = (target >= 0) | refused | overlapping | unknown
    reason = _reasons(target, iou, in_fusion, fusion, prev, merge)
    reason = reason_where(refused, lambda rows: pa.array(
        [f"a new box scoring below {threshold[i]:.3g}, the new-box threshold of its checkpoint (no curated box there)"
         for i in rows], pa.string()), base=reason)
    reason = reason_where(overlapping, lambda rows: pa.array(
        [f"not a new object: overlaps a curated box (IoU {overlap[i]:.2f} >= new_box_max_overlap "
         f"{merge.new_box_max_overlap}) without merging into it" for i in rows], pa.string()), base=reason)
    reason = reason_where(unknown, lambda rows: pa.array(
        [f"not a known object class: no curated box is labelled {unknown_label[i]!r} "
         "(new_box_known_labels_only)" for i in rows], pa.string()), base=reason)
    into = prev["annotation_id"].take(with_nulls(np.maximum(target[merged], 0), target[merged] < 0))
    kept_prev = conform(_absorb_into_previous(carry_details(apply_fusion(prev, fusion), new, target), new, target), CURATED)
    curated = pa.concat_tables([kept_prev, conform(new.take(pa.array(np.flatnonzero(~merged))), CURATED)])
    return curated, merged, reason, into


def _unknown_new_labels(new: pa.Table, candidates: np.ndarray, vocabulary: set[str]
                        ) -> tuple[np.ndarray, dict[int, str | None]]:
    """Bool per row of ``new``: a ``candidates`` row whose normalised label is not in
    ``vocabulary`` (empty: every label is known, no row); and those rows' normalised labels."""
    out = np.zeros(new.num_rows, bool)
    rows = np.flatnonzero(candidates) if vocabulary else np.zeros(0, np.int64)
    if not len(rows):  # only the candidates are normalised, not the round's captions
        return out, {}
    unknown = {int(i): label for i, label in zip(rows, normalized_labels(new.take(pa.array(rows))))
               if label not in vocabulary}
    out[list(unknown)] = True
    return out, unknown


def _over_a_curated_box(nearest_iou: np.ndarray, fused: np.ndarray, target: np.ndarray,
                        max_overlap: float | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Bool per row of the round: a fusable row (``fused`` are their positions, ``nearest_iou``
    their IoU with the previous curated object box they overlap most, any label; -1: none) that
    merged into no previous box (``target`` -1) but overlaps one with IoU >= ``max_overlap``; and
    that IoU per row (0 where none). ``max_overlap`` None: no row."""
    out, overlap = np.zeros(n_rows, bool), np.zeros(n_rows)
    if max_overlap is None or len(fused) == 0:
        return out, overlap
    hit = (nearest_iou >= max_overlap) & (target[fused] < 0)
    out[fused[hit]], overlap[fused[hit]] = True, nearest_iou[hit]
    return out, overlap


def _below_new_box_threshold(new: pa.Table, candidates: np.ndarray, thresholds: Mapping[str, float]
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Bool per row of ``new``: a ``candidates`` row whose source has a new-box threshold and
    whose score is below it; and the threshold per row (NaN: none)."""
    threshold = np.full(new.num_rows, np.nan)
    if not thresholds or not candidates.any():
        return np.zeros(new.num_rows, bool), threshold
    sources = pc.cast(new["source"], pa.string()).to_pylist()
    threshold = np.array([thresholds.get(s, np.nan) for s in sources], float)
    score = pc.fill_null(new["score"], 0.0).to_numpy(zero_copy_only=False).astype(float)
    return candidates & ~np.isnan(threshold) & (score < np.nan_to_num(threshold, nan=-np.inf)), threshold


def _reasons(target: np.ndarray, iou: np.ndarray, in_fusion: np.ndarray, fusion: Fusion, prev: pa.Table,
             merge: MergeConfig) -> pa.Array:
    """Why each merged row merged (null where it did not): one text per kind of match, and for
    fusion evidence (few rows) what it changed in the previous row."""
    merged = target >= 0
    boxes = in_fusion >= 0
    reason = reason_where(merged & ~boxes, f"merged into a previous round's row (IoU >= {merge.iou_threshold} or same text)")
    loosest = min(merge.fuse_iou, merge.fuse_iou_same_label or 1.0)
    reason = reason_where(boxes & ~fusion.evidence, f"merged into the previous round's box it overlaps (IoU >= {loosest}); "
                                                    "its producer gave that box before", base=reason)
    slot = np.searchsorted(fusion.rows, target)
    old = pc.coalesce(prev["label"], prev["text"]).take(pa.array(fusion.rows)).to_pylist()

    def evidence_texts(rows: np.ndarray) -> pa.Array:
        texts = []
        for i in rows:
            k = slot[i]
            changes = [f"label corrected {old[k]!r} -> {fusion.labels[k]!r}"] if fusion.relabelled[k] else []
            changes += ["box refined"] if fusion.refined[k] else []
            texts.append(f"fused into a previous round's box (IoU {iou[i]:.2f})" + (": " + "; ".join(changes) if changes else ""))
        return pa.array(texts, pa.string())

    return reason_where(fusion.evidence, evidence_texts, base=reason)
