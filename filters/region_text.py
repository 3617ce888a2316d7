"""Pick the text of each region from its candidate texts (FLD-5B region-text pairs).

Candidates are rows whose ``parent_id`` names a region (any kind but ``phrase``; the
region captioner writes crop captions, the region-text matcher writes its choice among
them with its similarity as ``score``). Representation in the curated table:

* the surviving region row keeps its class label in ``label`` and gets the chosen
  candidate's text in ``text``;
* every candidate row is consumed: dropped from the curated rows with the reason "text
  chosen for region ..." or "candidate text not chosen for region ...", and recorded in
  the region's ``absorbed_ids`` (it does not count as agreement: it did not see the box).

The matcher's row (``source == matcher_source``, the highest-scored one when several) is the
choice; without one, the region's own producer's description of it (a candidate of the same
``source`` as the region: Florence-2's ``REGION_TO_DESCRIPTION`` of its own
box), else ``fallback`` decides: ``keep_label`` leaves the region's text as it is,
``best_score`` takes the highest-scored candidate. Candidates whose parent region is
missing or was dropped are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import (
    FilterContext,
    FilterResult,
    equals,
    group_codes,
    reason_where,
    register_filter,
    to_numpy,
    valid,
    with_prefix,
)

FALLBACKS = ("keep_label", "best_score")


@dataclass(frozen=True)
class RegionTextConfig:
    matcher_source: str = "region_text_matcher"
    fallback: str = "keep_label"

    def __post_init__(self) -> None:
        if not isinstance(self.matcher_source, str) or not self.matcher_source:
            raise ValueError(f"region_text.matcher_source must name an annotator, got {self.matcher_source!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"region_text.fallback must be one of {FALLBACKS}, got {self.fallback!r}")


def _same_producer(table: pa.Table, rows: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Bool per candidate ``rows[i]``: made by the source of its region ``parents[i]`` (a round runs one
    version of each source)."""
    if len(rows) == 0:
        return np.zeros(0, bool)
    producer = group_codes(table["source"])
    return producer[rows] == producer[parents]


@register_filter("region_text", settings=RegionTextConfig, working_form=True)
def region_text_filter(table: pa.Table, config: RegionTextConfig, ctx: FilterContext) -> FilterResult:
    """Consume region-text candidates; the chosen one's text replaces its region's text."""
    n = table.num_rows
    scope = valid(table["parent_id"]) & ~equals(table["kind"], "phrase") if n else np.zeros(0, bool)
    if not scope.any():
        return FilterResult.keep_all(scope)
    is_region = equals(table["kind"], "region") & ~valid(table["parent_id"])
    region_rows = np.flatnonzero(is_region)
    pos = pc.index_in(table["parent_id"], value_set=table["annotation_id"].take(pa.array(region_rows)))
    orphan = scope & ~valid(pos)
    cand = np.flatnonzero(scope & ~orphan)
    parent = np.full(n, -1, np.int64)
    parent[cand] = region_rows[to_numpy(pos, 0).astype(np.int64)[cand]]

    # choose per parent: eligible rows with text, matcher first, then score, then id
    eligible = valid(table["text"])[cand]
    matcher = equals(table["source"], config.matcher_source)[cand]
    own = _same_producer(table, cand, parent[cand])
    if config.fallback == "keep_label":
        eligible &= matcher | own
    score = to_numpy(table["score"], -np.inf).astype(np.float64)[cand] if len(cand) else np.zeros(0)
    ids = group_codes(table["annotation_id"].take(pa.array(cand))) if len(cand) else np.zeros(0, np.int64)
    order = np.lexsort((ids, -score, ~own, ~matcher, ~eligible, parent[cand]))
    first = np.r_[True, parent[cand][order][1:] != parent[cand][order][:-1]] if len(cand) else np.zeros(0, bool)
    chosen_local = order[first & eligible[order]]
    chosen = cand[chosen_local]

    source_of_text = np.arange(n)
    source_of_text[parent[chosen]] = chosen
    new_text = table["text"].take(pa.array(source_of_text))

    keep = ~scope
    is_chosen = np.zeros(n, bool)
    is_chosen[chosen] = True
    parent_ids = table["annotation_id"].take(pa.array(np.maximum(parent, 0)))
    reason = reason_where(scope & ~orphan & ~is_chosen, with_prefix("candidate text not chosen for region ", parent_ids))
    reason = reason_where(is_chosen, with_prefix("text chosen for region ", parent_ids), reason)
    reason = reason_where(orphan, "parent region missing or dropped", reason)
    return FilterResult(keep=keep, reason=reason, judged=scope, absorbed_by=parent, agrees=False,
                        replace={"text": new_text})
