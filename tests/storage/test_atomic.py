"""storage.atomic: a write interrupted by an exception leaves no visible (or temp) file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.atomic import (
    LARGE_DICTIONARY_BYTES,
    atomic_path,
    small_dictionaries,
    write_parquet_atomic,
    write_text_atomic,
)


class Boom(Exception):
    pass


def test_interrupted_write_leaves_nothing(tmp_path):
    final = tmp_path / "out" / "part-0.parquet"
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half a parquet file")
            assert tmp.exists() and not final.exists() and tmp.name.startswith(".")
            raise Boom()
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path):
    final = write_text_atomic("old", tmp_path / "marker.json")
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_text("new but unfinished")
            raise Boom()
    assert final.read_text() == "old"


def test_completed_write_is_visible_and_readable(tmp_path):
    table = pa.table({"x": [1, 2, 3]})
    path = write_parquet_atomic(table, tmp_path / "a" / "t.parquet")
    assert pq.read_table(path).equals(table)
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]


def test_unique_value_columns_are_delta_length_encoded_without_dictionary_or_statistics(tmp_path):
    import duckdb

    ids = [f"{i:032x}" for i in range(1000)]
    table = pa.table({"annotation_id": ids, "source": ["detector", "ocr"] * 500,
                      "absorbed_ids": [[i, i] for i in ids], "bbox": [[1.0, 2.0, 3.0, 4.0]] * 1000,
                      "seen_by": [["detector@v1"]] * 1000,
                      "rule": pa.array(["nms"] * 1000).dictionary_encode()})
    path = write_parquet_atomic(table, tmp_path / "t.parquet")
    assert pq.read_table(path).equals(table)
    query = f"select count(distinct annotation_id), max(absorbed_ids[2]) from '{path}'"
    assert duckdb.sql(query).fetchall() == [(1000, ids[-1])]
    meta = pq.ParquetFile(path).metadata.row_group(0)
    column = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    for unique in ("annotation_id", "absorbed_ids.list.element"):
        assert "DELTA_LENGTH_BYTE_ARRAY" in column[unique].encodings
        assert not column[unique].has_dictionary_page and not column[unique].is_stats_set
    assert not column["bbox.list.element"].has_dictionary_page
    for repeated in ("source", "seen_by.list.element"):
        assert column[repeated].has_dictionary_page and column[repeated].is_stats_set
    assert column["rule"].has_dictionary_page and not column["rule"].is_stats_set


def test_block_that_writes_nothing_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "never.txt"):
            pass
    assert not (tmp_path / "never.txt").exists()


def test_large_dictionaries_are_decoded_before_the_write():
    unique = pa.array([f"caption {k} " + "x" * 64 for k in range(LARGE_DICTIONARY_BYTES // 64)]).dictionary_encode()
    table_ = pa.table({"text": unique, "kind": pa.array(["caption"] * len(unique)).dictionary_encode(),
                       "round": pa.array([0] * len(unique), pa.int32())})
    out = small_dictionaries(table_)
    assert out["text"].type == pa.string() and out["text"].to_pylist() == unique.to_pylist()
    assert pa.types.is_dictionary(out["kind"].type) and out["round"].type == pa.int32()
    small = table_.slice(0, 10)  # a slice keeps the whole dictionary: its size, not the rows', decides
    assert small_dictionaries(small)["text"].type == pa.string()
    labels = pa.table({"text": pa.array(["dog", "cat"] * 1000).dictionary_encode()})
    assert small_dictionaries(labels).equals(labels)


def test_stale_temps_are_those_no_live_process_owns(tmp_path):
    import os
    import subprocess
    import sys

    from storage.atomic import remove_stale_temps, stale_temps

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = tmp_path / "a" / f".part-1.parquet.{os.getpid()}.0123abcd.tmp"
    gone = tmp_path / "a" / f".part-2.parquet.{dead.pid}.0123abcd.tmp"
    trainer = tmp_path / "models" / "round=0" / ".final.tmp"
    published = tmp_path / f".catalog.duckdb.{dead.pid}.tmp"
    for path in (mine, gone, published):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    trainer.mkdir(parents=True)
    (trainer / "model.safetensors").write_text("half")
    (tmp_path / "a" / "part-3.parquet").write_text("kept")
    (tmp_path / ".round.lock").write_text("")
    assert stale_temps(tmp_path) == sorted([gone, trainer, published])
    assert remove_stale_temps(tmp_path) == sorted([gone, trainer, published])
    assert mine.exists() and not gone.exists() and not trainer.exists()
    assert (tmp_path / "a" / "part-3.parquet").exists() and (tmp_path / ".round.lock").exists()


def test_row_groups_and_metadata_are_written_as_asked(tmp_path):
    table = pa.table({"annotation_id": [f"id{i}" for i in range(7)], "score": [float(i) for i in range(7)]})
    path = write_parquet_atomic(table, tmp_path / "part.parquet", row_groups=[3, 1, 3], metadata={"fld_keys": '["a"]'})
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 1, 3]
    assert meta.metadata[b"fld_keys"] == b'["a"]' and pq.read_table(path).equals(table)
    with pytest.raises(ValueError, match="row_groups hold 6 rows, the table 7"):
        write_parquet_atomic(table, tmp_path / "bad.parquet", row_groups=[3, 3])
    assert not list(tmp_path.glob(".*tmp")) and not (tmp_path / "bad.parquet").exists()
