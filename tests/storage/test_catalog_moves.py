"""A data root copied elsewhere, the original deleted, answers the same from its own files."""

from __future__ import annotations

import shutil

import duckdb

from engine.dataset.locations import image_locations, read_images
from engine.ingest.shards import IngestConfig, ingest
from flows.main import main
from storage.catalog import Catalog
from storage.layout import DataRoot
from tests.images import jpeg
from tests.shards import write_tar


def test_a_moved_root_answers_from_its_new_place(tmp_path, capsys):
    original = DataRoot(tmp_path / "first")
    original.ensure()
    (original.path / "src").mkdir()
    shard = write_tar(original.path / "src" / "a.tar", [(f"{i}.jpg", jpeg(seed=i)) for i in range(3)])
    ingest(original, [str(shard)], IngestConfig(progress=False))
    with Catalog(original) as catalog:
        catalog.upsert("models", [{"round": 0, "path": str(original.model(0)), "version": "v", "promoted": True,
                                   "reason": "test", "metrics": "{}", "created_at": None}])
    assert main(["stats", "--root", str(original.path), "--json"]) == 0
    before = capsys.readouterr().out
    moved = DataRoot(tmp_path / "second")
    shutil.copytree(original.path, moved.path)
    shutil.rmtree(original.path)

    assert main(["stats", "--root", str(moved.path), "--json"]) == 0  # opens the snapshot: it repairs it first
    assert capsys.readouterr().out == before
    with duckdb.connect(str(moved.catalog), read_only=True) as con:  # a plain DuckDB client, afterwards
        con.execute(f"set file_search_path = '{moved.path}'")  # its views name files relative to the root
        shards = con.execute("select distinct shard from images").fetchall()
        assert shards == [(str(moved.path / "src" / "a.tar"),)]
        assert con.execute("select path from models").fetchall() == [(str(moved.model(0)),)]
        assert con.execute("select count(*) from images where status = 'ok'").fetchall() == [(3,)]
    with Catalog(moved) as catalog:
        locations = image_locations(catalog)
    assert len(list(read_images(locations))) == 3  # the bytes, read from the moved shard
