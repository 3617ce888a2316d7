"""The previous round's curated rows that a fresh review replaces, and the decisions that record it.

On an image whose standing review this round applies (``ReviewState.fresh``), a previous
curated row in review scope stands only when people kept it; rows they corrected, deleted or
never saw leave the curated set, and so do the rows whose ``parent_id`` names one that left
(phrases of a replaced caption, candidates of a replaced region). Each leaving row gets a
decision trail of this round (rule ``human_review``, ``row`` after the raw rows',
``merged_into`` = the human row that replaces it, if any), so the catalog's ``decisions``
view shows why it left and for what.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import equals, is_in, valid
from filters.human_review import RULE, ReviewState, review_scope
from storage.schema import DECISION_TRAILS, HUMAN_SOURCE


def replaced_previous(previous: pa.Table, state: ReviewState) -> tuple[pa.Table, list[tuple[str, str, str | None, int]]]:
    """``previous`` without the rows fresh reviews replace, and ``(annotation_id, reason,
    replaced_by, position in previous)`` for each row that left."""
    if previous is None or not state.fresh or previous.num_rows == 0:
        return previous, []
    on_fresh = np.flatnonzero(is_in(previous["image_id"], list(state.fresh)))
    sub = previous.take(pa.array(on_fresh))  # only the rows of freshly reviewed images are read into Python
    images, ids = sub["image_id"].to_pylist(), sub["annotation_id"].to_pylist()
    human = equals(sub["source"], HUMAN_SOURCE)
    versions = pc.cast(sub["source_version"], pa.string()).to_pylist()
    leaving: dict[int, tuple[str, str | None]] = {}  # position in ``sub`` -> (reason, replaced by)
    for k in np.flatnonzero(review_scope(sub)):
        review = state.latest[images[k]]
        if human[k] and versions[k] == review or ids[k] in state.kept:
            continue
        if ids[k] in state.corrected:
            leaving[k] = (f"corrected by a person (review {review})", state.corrected[ids[k]])
        elif ids[k] in state.deleted:
            leaving[k] = (f"deleted by a person (review {review})", None)
        else:
            leaving[k] = (f"the image was reviewed by a person (review {review}): rows people did not keep leave it", None)
    gone = {ids[k] for k in leaving}
    if gone:  # children of a row that left go with it
        parents = sub["parent_id"].to_pylist()
        for k in np.flatnonzero(valid(sub["parent_id"])):
            if parents[k] in gone and k not in leaving:
                leaving[k] = (f"its parent {parents[k]} was replaced in review {state.latest[images[k]]}", None)
    if not leaving:
        return previous, []
    stay = np.ones(previous.num_rows, bool)
    stay[on_fresh[list(leaving)]] = False
    return previous.filter(pa.array(stay)), [(ids[k], reason, into, int(on_fresh[k]))
                                             for k, (reason, into) in sorted(leaving.items())]


def carried_trails(left: list[tuple[str, str, str | None, int]], round_: int, first_row: int) -> pa.Table:
    """Decision trails (:data:`DECISION_TRAILS`) of the previous rows that left, each numbered
    ``first_row`` (the round's raw rows) + its position in the previous set, so the number does
    not depend on which other rows left with it (a round curated in parts numbers them alike)."""
    n = len(left)
    rule = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([RULE]))
    return pa.Table.from_arrays([
        pa.array([i for i, _, _, _ in left], pa.string()),
        pa.array(np.full(n, round_, np.int32)),
        pa.array(np.array([first_row + at for _, _, _, at in left], np.int64).astype(np.int32)),
        rule, rule,
        pa.array([reason for _, reason, _, _ in left], pa.string()).dictionary_encode(),
        pa.nulls(n, pa.int32()),
        pa.array([into for _, _, into, _ in left], pa.string()),
    ], schema=DECISION_TRAILS)
