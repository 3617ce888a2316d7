"""storage.catalog: tables, upserts and views over Parquet, readable by a plain DuckDB client."""

from __future__ import annotations

import duckdb

from storage import schema
from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot


def _image_row(i: int, status: str = "ok") -> dict:
    return {"image_id": f"{i:064x}", "shard_id": "s1", "shard": "/x.tar", "key": str(i), "status": status,
            "width": 10 + i, "height": 20, "ingested_at": schema.utc_now()}


def test_empty_root_has_queryable_empty_views(tmp_path):
    with Catalog(DataRoot(tmp_path)) as catalog:
        for view in ("images", "annotations", "curated", "decisions", "errors"):
            assert catalog.query(f"select count(*) from {view}") == [(0,)]
        assert catalog.query("select count(*) from rounds") == [(0,)]


def test_views_see_new_parquet_files_after_refresh(tmp_path, monkeypatch):
    root = DataRoot(tmp_path)
    with Catalog(root) as catalog:
        rows = [_image_row(i) for i in range(3)] + [_image_row(9, "error")]
        write_parquet_atomic(schema.table_from_rows(rows, schema.IMAGES), root.images_part("s1"))
        catalog.refresh_views()
        assert catalog.query("select count(*) from images where status = 'ok'") == [(3,)]
        assert catalog.known_image_ids() == {f"{i:064x}" for i in range(3)}
    # a plain DuckDB client opened from the root (`cd ROOT && duckdb catalog.duckdb "..."`) sees the same view
    monkeypatch.chdir(root.path)
    con = duckdb.connect("catalog.duckdb", read_only=True)
    assert con.execute("select sum(width) from images where status = 'ok'").fetchone() == (33,)
    con.close()


def test_upsert_replaces_rows_with_the_same_key(tmp_path):
    with Catalog(DataRoot(tmp_path)) as catalog:
        catalog.upsert("rounds", [{"round": 0, "status": "running"}, {"round": 1, "status": "running"}])
        catalog.upsert("rounds", [{"round": 0, "status": "done"}])
        assert catalog.query("select round, status from rounds order by round") == [(0, "done"), (1, "running")]


def test_annotation_view_unions_rounds_and_sources(tmp_path):
    root = DataRoot(tmp_path)
    for round_, source in [(0, "ocr"), (1, "florence2")]:
        row = schema.annotation_row(image_id="a" * 64, round_=round_, source=source, source_version="v",
                                    kind="region", region_type="object", text="cat", bbox=[1, 2, 3, 4], score=0.5)
        write_parquet_atomic(schema.table_from_rows([row], schema.ANNOTATIONS),
                             root.annotation_shard(round_, source, "s1"))
    with Catalog(root) as catalog:
        got = catalog.query("select round, source, bbox from annotations order by round")
        assert got == [(0, "ocr", [1.0, 2.0, 3.0, 4.0]), (1, "florence2", [1.0, 2.0, 3.0, 4.0])]


def test_a_column_no_file_has_reads_as_null(tmp_path):
    """Files written before a column was added to the schema still open: the column is NULL."""
    root = DataRoot(tmp_path)
    rows = [_image_row(i) for i in range(2)]
    table = schema.table_from_rows(rows, schema.IMAGES)
    write_parquet_atomic(table.drop_columns(["key", "ingested_at"]), root.images_part("s1"))
    with Catalog(root) as catalog:
        assert catalog.query("select count(*), count(key), count(ingested_at), sum(width) from images") == [(2, 0, 0, 21)]
        assert catalog.known_image_ids() == {f"{i:064x}" for i in range(2)}
