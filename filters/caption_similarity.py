"""Caption rule of the Florence recipe: a minimum image-text similarity.

The ``caption_scorer`` annotator writes, per caption, a similarity row: ``kind = "caption"``,
``source = scorer_source``, ``parent_id`` = the caption, ``score`` = the image-text similarity
``(1 + cos) / 2`` of a CLIP-style model (unitless, [0, 1], 0.5 = unrelated embeddings; see
``annotators/caption_scorer.py``). Judged rows:

* every similarity row: consumed, i.e. dropped with the reason "image-text similarity of
  caption <id>" and absorbed by its caption (``absorbed_by``; it is material, not agreement),
  or, when its caption is missing or was dropped by an earlier rule, dropped with "caption
  missing or dropped" and absorbed by nothing;
* every top-level caption with a scored similarity row: dropped when its similarity (the
  highest of its rows, when several) is below ``min_similarity``, with the reason
  "image-text similarity S < min_similarity T";
* with ``unscored = "drop"``, also every top-level caption without a scored similarity row (reason
  "no image-text similarity (caption_similarity.unscored = drop)").

``granularities`` (empty: every one) limits the two caption checks to captions of those
granularities: a CLIP-style text tower reads ~77 tokens, so a more detailed caption is scored
on its beginning only and a threshold fitted on brief captions says little about it.

``min_similarity`` defaults to 0.0: no caption is dropped (the similarity rows are still
consumed) until the config sets a threshold for its model, as a random test-size CLIP scores
everything near 0.5. For OpenAI's CLIP ViT-B/32 about 0.6 (cosine 0.2) drops captions
unrelated to their image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import (
    FilterContext,
    FilterResult,
    equals,
    is_in,
    reason_where,
    register_filter,
    to_numpy,
    valid,
    with_prefix,
)
from storage.schema import GRANULARITIES

UNSCORED_POLICIES = ("keep", "drop")


@dataclass(frozen=True)
class CaptionSimilarityConfig:
    """scorer_source: the annotator whose rows carry the similarities; min_similarity: the
    lowest kept similarity, in [0, 1] (0: off); unscored: ``keep`` or ``drop`` captions that
    have no similarity row."""

    scorer_source: str = "caption_scorer"
    min_similarity: float = 0.0
    unscored: str = "keep"
    granularities: tuple[str, ...] = ()  # empty: all

    def __post_init__(self) -> None:
        if not isinstance(self.scorer_source, str) or not self.scorer_source:
            raise ValueError(f"caption_similarity.scorer_source must name an annotator, got {self.scorer_source!r}")
        value = self.min_similarity
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"caption_similarity.min_similarity must be a number in [0, 1], got {value!r}")
        if self.unscored not in UNSCORED_POLICIES:
            raise ValueError(f"caption_similarity.unscored must be one of {UNSCORED_POLICIES}, got {self.unscored!r}")
        if not isinstance(self.granularities, (tuple, list)) or \
                any(g not in GRANULARITIES for g in self.granularities):
            raise ValueError(f"caption_similarity.granularities must list granularities of {GRANULARITIES}, "
                             f"got {self.granularities!r}")
        object.__setattr__(self, "granularities", tuple(self.granularities))


@register_filter("caption_similarity", settings=CaptionSimilarityConfig, working_form=True)
def caption_similarity_filter(table: pa.Table, config: CaptionSimilarityConfig, ctx: FilterContext) -> FilterResult:
    """Drop captions below the minimum image-text similarity; consume the similarity rows."""
    n = table.num_rows
    if n == 0:
        return FilterResult.keep_all(np.zeros(0, bool))
    is_caption = equals(table["kind"], "caption")
    top = is_caption & ~valid(table["parent_id"])
    sim = is_caption & valid(table["parent_id"]) & equals(table["source"], config.scorer_source)
    if not sim.any() and config.unscored == "keep":
        return FilterResult.keep_all(np.zeros(n, bool))
    caption_rows = np.flatnonzero(top)
    pos = pc.index_in(table["parent_id"], value_set=table["annotation_id"].take(pa.array(caption_rows)))
    orphan = sim & ~valid(pos)
    linked = np.flatnonzero(sim & ~orphan)
    parent = np.full(n, -1, np.int64)
    parent[linked] = caption_rows[to_numpy(pos, 0).astype(np.int64)[linked]]

    # each caption's similarity: the highest of its rows that carry a score
    score = to_numpy(table["score"], np.nan).astype(np.float64)
    rated = linked[~np.isnan(score[linked])]
    best = np.full(n, -np.inf)
    np.maximum.at(best, parent[rated], score[rated])
    scored = np.zeros(n, bool)
    scored[parent[rated]] = True
    checked = is_in(table["granularity"], config.granularities) if config.granularities else np.ones(n, bool)
    low = scored & checked & ~(best >= config.min_similarity)
    unscored = top & checked & ~scored & (config.unscored == "drop")

    shown = pc.cast(pc.round(pa.array(np.where(np.isfinite(best), best, np.nan)), 3), pa.string())
    reason = reason_where(low, pc.binary_join_element_wise(
        "image-text similarity ", shown, f" < min_similarity {config.min_similarity}", ""))
    reason = reason_where(unscored, f"no image-text similarity (caption_similarity.unscored = {config.unscored})", reason)
    parent_ids = table["annotation_id"].take(pa.array(np.maximum(parent, 0)))
    reason = reason_where(sim & ~orphan, with_prefix("image-text similarity of caption ", parent_ids), reason)
    reason = reason_where(orphan, "caption missing or dropped", reason)
    drop = sim | low | unscored
    return FilterResult(keep=~drop, reason=reason, judged=sim | (scored & checked) | unscored, absorbed_by=parent,
                        agrees=False)
