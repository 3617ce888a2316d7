"""The ``score`` a release publishes: a model's confidence, never a curation prior.

Curation gives score-less rows with geometry the prior of their source (the ``prior_score``
rule: existing labels, people's rows) so they can be weighed against models' boxes, and the
curated row keeps it. A prior is not a confidence: a release that published it would make
``score > 0.5`` drop every human label. So the released ``score`` is null for

* rows of a given source: people's (``human``) and existing labels (:data:`GIVEN_SOURCES`),
  whatever number curation gave them, and
* rows their source emitted without a score (the raw row of the same round, source and
  annotation id has none): whatever number they carry came from the prior,

and the curated score (the annotator's own, raised by agreement where boxes were fused)
otherwise. COCO, whose results need a number, writes 1.0 for a null score (a given label).
The build streams rows in image id order; :func:`create_unscored` writes the ids of the second
kind, with their image, to the build's scratch database, streamed beside the rows in the same
order, and :func:`published_scores` applies both to a batch of rows.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.release.batching import SCRATCH
from storage.schema import HUMAN_SOURCE

#: sources that give labels, not predictions: people's reviews, existing COCO labels, the
#: images' own alt text (their annotators never score a row)
GIVEN_SOURCES = (HUMAN_SOURCE, "coco_labels", "sidecar_captions")
#: the scratch table of :func:`create_unscored`
UNSCORED = f"{SCRATCH}.unscored"


def create_unscored(con: duckdb.DuckDBPyConnection, round_: int) -> None:
    """(image_id, annotation_id) of round ``round_``'s curated rows whose raw row (same round,
    source and id) had no score, the ones whose curated score, if any, is a prior, as the table
    :data:`UNSCORED`."""
    con.execute(
        f"create table {UNSCORED} as select distinct c.image_id, c.annotation_id from curated c join annotations a "
        "on a.annotation_id = c.annotation_id and a.round = c.round and a.source = c.source "
        f"where c.curated_round = {int(round_)} and a.score is null")


def published_scores(table: pa.Table, unscored: pa.Array) -> pa.Table:
    """``table`` (curated rows) with ``score`` null where it is not a model's confidence (module
    docstring); ``unscored``: the ids of :data:`UNSCORED` (at least those of ``table``'s images)."""
    if table.num_rows == 0:
        return table
    given = pc.is_in(table["source"], value_set=pa.array(GIVEN_SOURCES, pa.string()))
    prior = pc.is_in(table["annotation_id"], value_set=unscored)
    score = table["score"].combine_chunks()
    values = pc.if_else(pc.or_(given, prior).combine_chunks(), pa.scalar(None, score.type), score)
    return table.set_column(table.schema.get_field_index("score"), table.schema.field("score"), values)
