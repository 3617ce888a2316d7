"""Releases are built in bounded memory: batches of a few images give the very bytes one batch of
every image gives, no batch holds more than its images' rows and one Arrow batch of the next,
and the unique names found without a set of every name are the reference's."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import duckdb
import pytest

import engine.release.passes as passes
import engine.release.row_stream as row_stream
from engine.release.batching import SCRATCH, ReleaseBatching
from engine.release.build import ReleaseConfig, build_release
from engine.release.name_table import CHOSEN, PLAIN, create_names
from engine.release.names import may_be_suffixed, safe_name, unique_names
from storage.catalog import Catalog

CONFIG = ReleaseConfig(rows_per_file=50, row_group_size=16, images_per_shard=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_small_batches_give_the_same_release_and_hold_one_batch(report_root, monkeypatch):
    """Round 1 (8 images) built in one batch, and in batches of 3 images with Arrow batches of 4
    rows, DuckDB at 64 MiB and the rows sorted in ranges of image ids: the same bytes, and each batch holds at most its 3 images' rows
    plus 4 read ahead, never the round."""
    one = build_release(report_root["root"], 1, "test-r1-one-batch", CONFIG,
                        ReleaseBatching(images=10_000, fetch_rows=100_000))
    seen = []
    stream = passes.image_batches

    def recorded(con, round_, batching, work=None):
        for batch in stream(con, round_, batching, work):
            seen.append((len(batch.metas), batch.table.num_rows, batch.held_rows))
            yield batch

    monkeypatch.setattr(passes, "image_batches", recorded)
    queries = []
    reader = row_stream.record_batches

    def recorded_sql(con, sql, rows):
        queries.append(sql)
        return reader(con, sql, rows)

    monkeypatch.setattr(row_stream, "record_batches", recorded_sql)
    small = ReleaseBatching(images=3, fetch_rows=4, sql_memory_mib=64, sort_rows=5)  # rows sorted in 16 ranges
    built = build_release(report_root["root"], 1, "test-r1-batched", CONFIG, small)
    assert _files(Path(built["path"])) == _files(Path(one["path"]))
    for stream in ("rows", "images"):  # both were sorted range by range
        assert sum(f"sorted/{stream}/id_range=" in sql for sql in queries) > 3, stream
    with Catalog(report_root["root"]) as catalog:
        per_image = sorted((n for (n,) in catalog.query(
            "select count(*) from curated where curated_round = 1 group by image_id")), reverse=True)
    total = sum(per_image)
    assert [n for n, _, _ in seen] == [3, 3, 2] and sum(rows for _, rows, _ in seen) == total
    for images, rows, held in seen:
        assert rows <= sum(per_image[:images]) and rows <= held <= rows + small.fetch_rows < total


def test_batching_is_validated():
    with pytest.raises(ValueError, match="images must be an integer >= 1"):
        ReleaseBatching(images=0)
    with pytest.raises(ValueError, match="sql_memory_mib"):
        ReleaseBatching(sql_memory_mib=8)


def _image_id(prefix: str, n: int) -> str:
    return (prefix + hashlib.sha256(str(n).encode()).hexdigest())[:64]


def test_bounded_names_are_the_references(tmp_path):
    """Duplicates in every case, names that look like another image's suffixed name, and ids
    sharing their first 8 hex digits (so an 8-digit suffix collides and 16 are needed): the names
    ``name_table`` finds from what can collide are the ones :func:`unique_names` gives."""
    rng = random.Random(5)
    given: dict[str, tuple[str, str, str, str]] = {}
    for n in range(300):
        image_id = _image_id("abcdef12" if n % 3 == 0 else "", n)
        stem = rng.choice(["image", "Image", "IMAGE.JPG", "photo", f"unique{n}", "dup-abcdef12",
                           f"image-{_image_id('abcdef12', n + 3)[:8]}", f"x-{_image_id('', n - 1)[:16]}"])
        given[image_id] = (f"k{rng.randrange(50):02d}/{stem}", stem, "JPEG", "jpg")
    expected = unique_names(given)
    con = duckdb.connect()
    con.execute(f"attach '{tmp_path / 'scratch.duckdb'}' as {SCRATCH}")
    con.execute(f"create table {PLAIN} (image_id varchar, ord bigint, plain varchar, folded varchar, "
                "suffix_like boolean)")
    ordered = sorted(given.items(), key=lambda kv: (kv[1][0], kv[0]))
    for ord_, (image_id, (_, name, fmt, ext)) in enumerate(ordered):
        plain = safe_name(name, fmt, ext, image_id)
        con.execute(f"insert into {PLAIN} values (?, ?, ?, ?, ?)",
                    [image_id, ord_, plain, plain.casefold(), may_be_suffixed(plain.casefold())])
    create_names(con, fetch_rows=7)
    chosen = dict(con.execute(f"select image_id, file_name from {CHOSEN}").fetchall())
    plain = dict(con.execute(f"select image_id, plain from {PLAIN}").fetchall())
    assert {i: chosen.get(i, plain[i]) for i in given} == expected
    assert len(chosen) < len(given)  # the uncontested ones were never named one by one
    assert any(name.endswith(f"-{image_id[:16]}.jpg") for image_id, name in expected.items())  # 8 digits collided
