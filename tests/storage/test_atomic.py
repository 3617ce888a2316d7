"""storage.atomic: a write interrupted by an exception leaves no visible (or temp) file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.atomic import atomic_path, write_parquet_atomic, write_text_atomic


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


def test_unique_value_columns_skip_the_dictionary_and_statistics(tmp_path):
    table = pa.table({"annotation_id": [f"{i:032x}" for i in range(1000)], "source": ["detector", "ocr"] * 500})
    path = write_parquet_atomic(table, tmp_path / "t.parquet")
    assert pq.read_table(path).equals(table)
    ids, sources = (pq.ParquetFile(path).metadata.row_group(0).column(i) for i in range(2))
    assert not ids.has_dictionary_page and not ids.is_stats_set
    assert sources.has_dictionary_page and sources.statistics.min == "detector"


def test_block_that_writes_nothing_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "never.txt"):
            pass
    assert not (tmp_path / "never.txt").exists()
