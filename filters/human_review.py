"""People's verdicts take precedence: on an image a person reviewed, only what they kept or drew stands.

Scope: top-level rows a review shows (``kind`` region or caption without ``parent_id``;
phrases and region-text candidates are not reviewed). For every such row of an image that a
review applicable to this round covers (``FilterContext.reviews``, built by
``engine.curate.review_state``):

* a ``human`` row is kept when it belongs to the image's latest review, else dropped as
  superseded by it (or, with no review of its image on record, as part of an import cut short);
* any other row is kept only when people kept it in that review (its id is among the rows
  they left unchanged); a row they corrected is dropped and absorbed by its human
  replacement (found in the same table: curation partitions hold whole images), a row they
  deleted is dropped, and a row they never saw (a later model's output) is dropped because
  the image's reviewed rows are closed to other sources.

The rule is registered with ``protects``: the rows it judges and keeps are judged by no later
rule (NMS cannot suppress a box a person drew, the region-text matcher cannot rename it), and
the merge adds them as they are. Without reviews it judges nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import FilterContext, FilterResult, equals, is_in, register_filter, valid
from storage.schema import HUMAN_SOURCE, KIND_CAPTION, KIND_REGION

RULE = "human_review"


@dataclass(frozen=True)
class ReviewState:
    """The reviews that bind one round's curation (ids are annotation ids, images image ids).

    latest: image -> the review id whose verdicts stand for it (the latest applicable one);
    kept: rows people left unchanged in those reviews; corrected: row -> the human row that
    replaces it; deleted: rows people deleted; fresh: images whose latest review is applied by
    this round (their previous curated rows are replaced now, ``engine.curate.review_state``)."""

    latest: Mapping[str, str] = field(default_factory=dict)
    kept: frozenset[str] = frozenset()
    corrected: Mapping[str, str] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()
    fresh: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.latest)


@dataclass(frozen=True)
class HumanReviewConfig:
    """No settings: the verdicts come from the imported reviews (``fld review import``)."""


def review_scope(table: pa.Table) -> np.ndarray:
    """Rows a review shows: top-level regions and captions (no ``parent_id``)."""
    if table.num_rows == 0:
        return np.zeros(0, bool)
    return (equals(table["kind"], KIND_REGION) | equals(table["kind"], KIND_CAPTION)) & ~valid(table["parent_id"])


@register_filter(RULE, settings=HumanReviewConfig, protects=True)
def human_review_filter(table: pa.Table, config: HumanReviewConfig, ctx: FilterContext) -> FilterResult:
    """Keep what people kept or drew on reviewed images; drop the rest with the verdict as reason."""
    n = table.num_rows
    state: ReviewState = ctx.reviews or ReviewState()
    human = equals(table["source"], HUMAN_SOURCE)
    reviewed = is_in(table["image_id"], list(state.latest)) if state else np.zeros(n, bool)
    judged = review_scope(table) & (reviewed | human)
    if not judged.any():  # no review and no human row: nothing to judge (no per-row work)
        return FilterResult.keep_all(judged)
    rows = np.flatnonzero(judged)  # only these rows are read into Python
    index = pa.array(rows)
    ids = dict(zip(rows, table["annotation_id"].take(index).to_pylist()))
    review = {i: state.latest.get(image) for i, image in zip(rows, table["image_id"].take(index).to_pylist())}
    versions = dict(zip(rows, pc.cast(table["source_version"].take(index), pa.string()).to_pylist()))
    position = {ids[i]: i for i in rows if human[i]}
    keep = np.ones(n, bool)
    absorbed_by = np.full(n, -1, np.int64)
    reasons: list[str | None] = [None] * n
    for i in rows:
        latest = review[i]
        if human[i]:
            if latest is None:
                keep[i], reasons[i] = False, f"its review ({versions[i]}) has no import record (an import was cut short)"
            elif versions[i] != latest:
                keep[i], reasons[i] = False, f"superseded by a later review of the image ({latest})"
            continue
        if ids[i] in state.kept:
            continue
        keep[i] = False
        if ids[i] in state.corrected:
            absorbed_by[i] = position.get(state.corrected[ids[i]], -1)
            reasons[i] = f"corrected by a person (review {latest})"
        elif ids[i] in state.deleted:
            reasons[i] = f"deleted by a person (review {latest})"
        else:
            reasons[i] = f"the image was reviewed by a person (review {latest}): rows people did not keep cannot enter it"
    return FilterResult(keep=keep, reason=pa.array(reasons, pa.string()), judged=judged, absorbed_by=absorbed_by)
