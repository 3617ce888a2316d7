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
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from storage.catalog import Catalog
from storage.schema import HUMAN_SOURCE

#: sources that give labels, not predictions: people's reviews, existing COCO labels, the
#: images' own alt text (their annotators never score a row)
GIVEN_SOURCES = (HUMAN_SOURCE, "coco_labels", "sidecar_captions")


def unscored_ids(catalog: Catalog, round_: int) -> pa.Array:
    """Ids of round ``round_``'s curated rows whose raw row (same round, source and id) had no
    score: the ones whose curated score, if any, is a prior."""
    return catalog.con.sql(
        "select distinct c.annotation_id from curated c join annotations a on a.annotation_id = c.annotation_id "
        "and a.round = c.round and a.source = c.source where c.curated_round = ? and a.score is null",
        params=[int(round_)]).to_arrow_table()["annotation_id"].combine_chunks().cast(pa.string())


def published_scores(table: pa.Table, unscored: pa.Array) -> pa.Table:
    """``table`` (curated rows) with ``score`` null where it is not a model's confidence (module
    docstring); ``unscored``: :func:`unscored_ids`."""
    if table.num_rows == 0:
        return table
    given = pc.is_in(table["source"], value_set=pa.array(GIVEN_SOURCES, pa.string()))
    prior = pc.is_in(table["annotation_id"], value_set=unscored)
    score = table["score"].combine_chunks()
    values = pc.if_else(pc.or_(given, prior).combine_chunks(), pa.scalar(None, score.type), score)
    return table.set_column(table.schema.get_field_index("score"), table.schema.field("score"), values)
