"""``fld review plan``: rank a round's images by how much a human look would change the data.

Nothing here reads ground truth: every finding comes from the round's own annotations, its
curated set and its decision trails. Per image (object boxes, pixels, IoU over boxes):

* ``disputed_labels``: curated boxes that a raw box of the round overlaps (IoU >= ``iou``)
  with another label (two sources, or the model and a specialist, disagree on what it is);
* ``one_source``: curated boxes only one source saw (``seen_by``) while another source that
  gives boxes of that label in this round gave boxes on the image (it missed this one, or the
  box is not there; a class only one source knows is no disagreement);
* ``near_threshold``: curated boxes whose score lies within ``margin`` of their source's
  threshold (the round's calibrated new-box or confidence threshold, else the configured one),
  for sources that score their rows (a prior given to unscored labels is no confidence);
* ``borderline_drops``: raw boxes the ``confidence`` rule or the merge's new-box threshold
  dropped with a score within ``margin`` of it and no curated box there (an object the round
  may have missed).

``priority`` = the weighted sum of the counts (:class:`engine.review.config.ReviewConfig`);
ties are broken by a hash of the image id, so the order is stable. The queue holds only images
with at least one finding (never padded with images nothing points at), the top ``budget`` of
them, and is written to ``review/round=R/queue.parquet`` (the catalog's ``review_queue`` view),
one text per finding in ``reasons``; :class:`ReviewPlan` says how many images had a reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.parquet_io import read_curated, read_raw
from engine.review.config import ReviewConfig
from engine.review.rows import row_sources
from storage.atomic import write_parquet_atomic
from storage.catalog import publish_views
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot
from storage.schema import HUMAN_SOURCE, REVIEW_QUEUE, table_from_rows

SIGNALS = ("disputed_labels", "one_source", "near_threshold", "borderline_drops")


@dataclass(frozen=True)
class Thresholds:
    """Score thresholds per source: the round's calibrated ones first, then the configured."""

    calibrated: Mapping[str, float]
    configured: Mapping[str, float]
    default: float

    def of(self, source: str) -> float:
        return float(self.calibrated.get(source, self.configured.get(source, self.default)))


def round_thresholds(root: DataRoot, round_: int, confidence: Any) -> Thresholds:
    """The thresholds round ``round_`` used: its curation summary's new-box and calibrated
    thresholds over ``confidence`` (a ``ConfidenceConfig``)."""
    summary_path = root.curated(round_) / "_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    calibrated = {**(summary.get("calibrated_thresholds") or {}), **(summary.get("new_box_thresholds") or {})}
    return Thresholds(calibrated, dict(confidence.per_source), float(confidence.default))


def _objects(table: pa.Table) -> pa.Table:
    mask = pc.and_(pc.and_(pc.equal(table["kind"], "region"), pc.equal(table["region_type"], "object")),
                   pc.and_(pc.is_null(table["parent_id"]), pc.is_valid(table["bbox"])))
    return table.filter(pc.fill_null(mask, False))


def _label(row: dict[str, Any]) -> str:
    return " ".join(str(row.get("label") or row.get("text") or "").lower().split())


def _box(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["bbox"] for r in rows], np.float64).reshape(-1, 4)


def _dropped_raw(root: DataRoot, round_: int) -> set[str]:
    """Ids of raw rows the confidence rule or the merge's new-box threshold dropped."""
    import duckdb

    files = sorted(str(p) for p in root.decisions(round_).glob("part-*.parquet"))
    if not files:
        return set()
    with duckdb.connect() as con:
        rows = con.execute(
            "select annotation_id from read_parquet(?) where dropped_by = 'confidence' "
            "or (dropped_by = 'merge' and merged_into is null and absorbed_row is null)", [files]).fetchall()
    return {r[0] for r in rows}


@dataclass(frozen=True)
class RoundSources:
    """What the round's sources give: the labels of each source's boxes, and the sources that score them."""

    labels: Mapping[str, frozenset[str]]
    scored: frozenset[str]

    @classmethod
    def of(cls, raw: list[dict[str, Any]]) -> "RoundSources":
        labels: dict[str, set[str]] = defaultdict(set)
        scored = set()
        for row in raw:
            labels[row["source"]].add(_label(row))
            if row.get("score") is not None:
                scored.add(row["source"])
        return cls({k: frozenset(v) for k, v in labels.items()}, frozenset(scored))


def image_findings(curated: list[dict[str, Any]], raw: list[dict[str, Any]], dropped: set[str],
                   thresholds: Thresholds, config: ReviewConfig, sources: RoundSources | None = None) -> dict[str, Any]:
    """The counts and reasons of one image from its curated and raw object boxes (``sources``:
    what the round's sources give, default from ``raw``)."""
    sources_of_round = sources or RoundSources.of(raw)
    counts = dict.fromkeys(SIGNALS, 0)
    reasons: list[str] = []
    kept_raw = [r for r in raw if r["annotation_id"] not in dropped]
    cur_boxes, raw_boxes = _box(curated), _box(kept_raw)
    iou = box_iou_matrix(cur_boxes, raw_boxes) if len(curated) and len(kept_raw) else np.zeros((len(curated), 0))
    image_sources = {r["source"] for r in raw}
    for i, row in enumerate(curated):
        label = _label(row)
        disputes = sorted({(_label(kept_raw[j]), kept_raw[j]["source"]) for j in np.flatnonzero(iou[i] >= config.iou)
                           if _label(kept_raw[j]) != label and kept_raw[j]["source"] != HUMAN_SOURCE})
        if disputes:
            counts["disputed_labels"] += 1
            reasons.append(f"box {label!r} is also called " + ", ".join(f"{other!r} ({source})" for other, source in disputes))
        sources = row_sources(row)
        knowing = {s for s in image_sources - sources - {HUMAN_SOURCE} if label in sources_of_round.labels.get(s, ())}
        if len(sources) == 1 and knowing and HUMAN_SOURCE not in sources:
            counts["one_source"] += 1
            reasons.append(f"box {label!r} only {next(iter(sources))} gave ({', '.join(sorted(knowing))} did not)")
        score, source = row.get("score"), row["source"]
        if score is not None and source in sources_of_round.scored and \
                abs(float(score) - thresholds.of(source)) <= config.margin:
            counts["near_threshold"] += 1
            reasons.append(f"box {label!r} scores {float(score):.2f}, near {source}'s threshold {thresholds.of(source):.2f}")
    for r in raw:
        if r["annotation_id"] not in dropped or r.get("score") is None:
            continue
        threshold = thresholds.of(r["source"])
        if float(r["score"]) < threshold - config.margin:
            continue
        overlap = box_iou_matrix(_box([r]), cur_boxes) if len(curated) else np.zeros((1, 0))
        if overlap.size and overlap.max() >= config.iou:
            continue
        counts["borderline_drops"] += 1
        reasons.append(f"{r['source']} box {_label(r)!r} dropped at {float(r['score']):.2f} "
                       f"(threshold {threshold:.2f}) where no curated box is")
    weights = {"disputed_labels": config.disputed_label_weight, "one_source": config.one_source_weight,
               "near_threshold": config.near_threshold_weight, "borderline_drops": config.borderline_drop_weight}
    return {**counts, "priority": float(sum(weights[k] * counts[k] for k in SIGNALS)), "reasons": reasons,
            "rows": len(curated)}


def rank_images(root: DataRoot, round_: int, thresholds: Thresholds, config: ReviewConfig) -> list[dict[str, Any]]:
    """Every curated image of the round with its findings, highest priority first."""
    curated_table = read_curated(root, round_)
    if curated_table is None:
        raise ValueError(f"round {round_} has no curated set: run the round before planning its review")
    curated_by, raw_by = defaultdict(list), defaultdict(list)
    for row in _objects(curated_table).to_pylist():
        curated_by[row["image_id"]].append(row)
    raw = read_raw(root, round_)
    dropped = _dropped_raw(root, round_)
    raw_objects = _objects(raw).to_pylist()
    for row in raw_objects:
        raw_by[row["image_id"]].append(row)
    sources = RoundSources.of(raw_objects)
    images = sorted(set(curated_table["image_id"].to_pylist()))
    ranked = []
    for image in images:
        found = image_findings(curated_by.get(image, []), raw_by.get(image, []), dropped, thresholds, config, sources)
        ranked.append({"round": round_, "image_id": image, **found})
    ranked.sort(key=lambda r: (-r["priority"], hashlib.sha256(r["image_id"].encode()).hexdigest()))
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    return ranked


@dataclass(frozen=True)
class ReviewPlan:
    """A written review queue: ``queue`` (:data:`REVIEW_QUEUE` rows), the round's curated
    ``images``, how many of them had a reason to look (``with_reason``) and the ``budget``."""

    queue: pa.Table
    images: int
    with_reason: int
    budget: int

    def line(self, round_: int) -> str:
        """The one-line summary ``fld review plan`` prints."""
        return (f"review queue of round {round_}: {self.queue.num_rows} images ({self.with_reason} of "
                f"{self.images} curated images have a reason to look; budget {self.budget})")


def plan_queue(root: DataRoot, round_: int, budget: int | None, thresholds: Thresholds, config: ReviewConfig
               ) -> ReviewPlan:
    """Rank round ``round_``'s images and write those with a reason, at most ``budget`` (None:
    ``config.budget``), as its review queue."""
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise ValueError(f"--budget must be a whole number of images >= 1, got {budget!r}")
    ranked = rank_images(root, round_, thresholds, config)
    budget = config.budget(len(ranked)) if budget is None else budget
    with_reason = [row for row in ranked if row["reasons"]]
    queue = table_from_rows(with_reason[:budget], REVIEW_QUEUE)
    write_parquet_atomic(queue, root.review_queue(round_))
    publish_views(root)
    return ReviewPlan(queue, len(ranked), len(with_reason), budget)


def plan_review(root: DataRoot, round_: int, budget: int | None, thresholds: Thresholds, config: ReviewConfig
                ) -> pa.Table:
    """:func:`plan_queue`'s queue table (for callers that need only the rows)."""
    return plan_queue(root, round_, budget, thresholds, config).queue

