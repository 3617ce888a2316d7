"""A round's curation summary (``curated/round=R/_summary.json``): rows in, kept, dropped,
carried and curated, drops and judgements per rule, the reviews and thresholds that applied;
a round curated in partitions sums the counts of its partitions."""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

from filters.human_review import ReviewState
from storage.decisions import judged_counts, value_counts

#: the counts of a round's summary that a round curated in parts sums over its parts
SUMMED_KEYS = ("input_rows", "kept_new_rows", "dropped_rows", "carried_rows", "carried_rows_replaced_by_review",
               "curated_rows", "dropped_by_rule", "judged_by_rule", "decision_rows")


def summary_counts(raw_rows: int, previous_rows: int, curated_rows: int, trails: pa.Table) -> dict[str, Any]:
    """The :data:`SUMMED_KEYS` of one curation: rows in, kept, dropped, carried and curated,
    drops and judgements per rule (from the trails; a trail past the raw rows' is a previous
    row a fresh review replaced)."""
    carried_left = trails.num_rows - raw_rows
    dropped_rows = trails.num_rows - trails["dropped_by"].null_count - carried_left
    judged = judged_counts(trails)
    return {"input_rows": raw_rows, "kept_new_rows": raw_rows - dropped_rows,  # curate_tables checked the accounting
            "dropped_rows": dropped_rows, "carried_rows": previous_rows, "carried_rows_replaced_by_review": carried_left,
            "curated_rows": curated_rows, "dropped_by_rule": value_counts(trails["dropped_by"]),
            "judged_by_rule": judged, "decision_rows": sum(judged.values())}


def round_summary(round_: int, counts: Mapping[str, Any], reviews: ReviewState, calibrated: Mapping[str, float],
                  new_box: Mapping[str, float]) -> dict[str, Any]:
    """A round's ``_summary.json`` (less its parts and seconds) from its :func:`summary_counts`."""
    summary = {"round": round_, **{k: counts[k] for k in SUMMED_KEYS[:5]},
               "reviews": sorted(set(reviews.latest.values())),
               **{k: counts[k] for k in SUMMED_KEYS[5:]},
               "calibrated_thresholds": dict(calibrated), "new_box_thresholds": dict(new_box)}
    return summary
