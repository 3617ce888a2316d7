"""A round's curated rows as plain dicts, the columns every consumer reads.

Curated Parquet is read by column name through DuckDB (extra columns are ignored, missing
optional ones are null; pyarrow cannot read fixed-size list columns holding nulls).
"""

from __future__ import annotations

from typing import Any

from storage.layout import DataRoot

CURATED_COLUMNS = ("annotation_id", "image_id", "kind", "granularity", "region_type", "text", "label",
                   "bbox", "quad", "polygons", "parent_id", "span_start", "span_end", "absorbed_ids")
#: the sources that are the model being trained (its own boxes do not calibrate it)
MODEL_SOURCES = ("florence2",)


def read_curated_rows(root: DataRoot, round_: int) -> list[dict[str, Any]]:
    """The curated rows of ``round_`` as dicts of :data:`CURATED_COLUMNS` (missing ones None),
    in (image_id, annotation_id) order."""
    import duckdb

    files = sorted(str(p) for p in root.curated(round_).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"round {round_} has no curated set under {root.curated(round_)}")
    with duckdb.connect() as con:
        rel = con.sql("select * from read_parquet(?, union_by_name = true, hive_partitioning = false)",
                      params=[files])
        present = [c for c in CURATED_COLUMNS if c in rel.columns]
        table = rel.select(", ".join(present)).order("image_id, annotation_id").to_arrow_table()
    return [{c: row.get(c) for c in CURATED_COLUMNS} for row in table.to_pylist()]
