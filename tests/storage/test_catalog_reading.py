"""Catalog.reading: the engine's catalog opened read-only never writes or publishes, sees the
Parquet files present now, waits for no reader and for no user's client of the published file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from storage import catalog_file, schema
from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot

REPO = Path(__file__).resolve().parents[2]


def _image_rows(n: int) -> list[dict]:
    return [{"image_id": f"{i:064x}", "shard_id": "s1", "shard": "/x.tar", "key": str(i), "status": "ok",
             "width": 10, "height": 20, "ingested_at": schema.utc_now()} for i in range(n)]


def _fingerprint(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@pytest.fixture
def root(tmp_path) -> DataRoot:
    root = DataRoot(tmp_path / "root")
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": 0, "status": "done"}])
    return root


def test_a_reading_open_leaves_both_files_alone_and_cannot_write(root):
    published, private = _fingerprint(root.catalog), _fingerprint(root.engine_catalog)
    with Catalog.reading(root) as catalog:
        assert catalog.query("select round, status from rounds") == [(0, "done")]
        with pytest.raises(duckdb.Error):
            catalog.upsert("rounds", [{"round": 1, "status": "running"}])
        with pytest.raises(duckdb.Error):  # straight through the connection too
            catalog.con.execute("insert into rounds (round, status) values (2, 'running')")
    assert _fingerprint(root.catalog) == published  # not published again (same inode, same mtime)
    assert _fingerprint(root.engine_catalog) == private
    with Catalog.reading(root) as catalog:
        assert catalog.query("select round, status from rounds") == [(0, "done")]


def test_reading_sees_files_added_since_the_last_write_without_storing_views(root):
    write_parquet_atomic(schema.table_from_rows(_image_rows(3), schema.IMAGES), root.images_part("s1"))
    with Catalog.reading(root) as catalog:
        assert catalog.query("select count(*) from images") == [(3,)]
    with duckdb.connect(str(root.catalog), read_only=True) as con:  # the published views: as of the last write
        assert con.execute("select count(*) from images").fetchall() == [(0,)]


def test_a_root_without_a_catalog_reads_as_empty_and_stays_without_one(tmp_path):
    root = DataRoot(tmp_path / "fresh")
    root.path.mkdir()
    with Catalog.reading(root) as catalog:
        assert catalog.query("select count(*) from rounds") == [(0,)]
        assert catalog.query("select count(*) from curated") == [(0,)]
    assert sorted(os.listdir(root.path)) == []


def test_a_reader_inside_a_writer_of_this_process_sees_what_it_committed(root):
    with Catalog(root) as writer:
        writer.upsert("rounds", [{"round": 1, "status": "running"}])
        with Catalog.reading(root) as reader:
            assert reader.query("select round from rounds order by round") == [(0,), (1,)]
            with pytest.raises(duckdb.Error):
                reader.upsert("rounds", [{"round": 2, "status": "running"}])
    with Catalog.reading(root) as catalog:
        assert catalog.query("select round from rounds order by round") == [(0,), (1,)]


def test_a_writer_in_another_thread_waits_for_a_reader_then_writes(root):
    done = threading.Event()

    def write() -> None:
        with Catalog(root) as catalog:
            catalog.upsert("rounds", [{"round": 1, "status": "running"}])
        done.set()

    reader = Catalog.reading(root)
    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert not done.wait(0.5)  # DuckDB opens a file in one mode per process: it waits
    finally:
        reader.close()
    thread.join(30)
    assert done.is_set()
    with Catalog.reading(root) as catalog:
        assert catalog.query("select round from rounds order by round") == [(0,), (1,)]


def _hold(path: Path, read_only: bool) -> subprocess.Popen:
    """Another process holding ``path`` open (read-only or writing) until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time, duckdb
        con = duckdb.connect({str(path)!r}, read_only={read_only})
        print("open", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "open"
    return process


def test_readers_do_not_wait_for_each_other_nor_for_a_client_of_the_published_file(root, monkeypatch):
    monkeypatch.setattr(catalog_file, "CATALOG_WAIT_S", 2.0)
    for path, read_only in ((root.engine_catalog, True), (root.catalog, False)):
        holder = _hold(path, read_only)
        try:
            started = time.monotonic()
            with Catalog.reading(root) as catalog:
                assert catalog.query("select count(*) from rounds") == [(1,)]
            assert time.monotonic() - started < 1.5
        finally:
            holder.kill()
            holder.wait()


def test_a_reader_waits_while_another_process_writes(root, monkeypatch):
    monkeypatch.setattr(catalog_file, "CATALOG_WAIT_S", 0.5)
    holder = _hold(root.engine_catalog, False)
    try:
        with pytest.raises(catalog_file.CatalogBusy):
            Catalog.reading(root)
    finally:
        holder.kill()
        holder.wait()
    with Catalog.reading(root) as catalog:
        assert catalog.query("select count(*) from rounds") == [(1,)]


def test_a_moved_root_reads_its_own_files(root, tmp_path):
    write_parquet_atomic(schema.table_from_rows(_image_rows(2), schema.IMAGES), root.images_part("s1"))
    with Catalog(root) as catalog:
        catalog.upsert("models", [{"round": 0, "path": str(root.model(0)), "version": "v", "promoted": True,
                                   "reason": "", "metrics": "{}", "created_at": None}])
    moved = DataRoot(tmp_path / "moved")
    shutil.copytree(root.path, moved.path)
    shutil.rmtree(root.path)
    with Catalog.reading(moved) as catalog:
        assert catalog.query("select path from models") == [(str(moved.model(0)),)]
        assert catalog.query("select count(*) from images") == [(2,)]
