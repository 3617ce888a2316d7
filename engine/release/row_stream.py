"""A release's images with their curated rows, in image id order, in batches of whole images.

Three sorted streams are read side by side, each a plain ordered query (no join under a sort,
which DuckDB does not spill reliably: :mod:`engine.release.batching`): the images (the scratch
``images_at`` table, :mod:`engine.release.image_table`) in batches of ``batching.images``; the
round's curated rows by (image_id, kind, annotation_id), the order and the query the release's
Parquet has always had (each stream of more than ``batching.sort_rows`` rows sorted range by
range of image ids, :func:`sorted_by_image_id`); and the ids whose score is a prior (:mod:`engine.release.scores`). For a
batch of images, each row stream is read up to the batch's last image id (both are sorted by
it), so a batch holds its images' rows and at most one Arrow batch (``batching.fetch_rows``) of
the images after it. ``held_rows`` says how many rows were held when a batch was made, what a
test of the bound reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.release.batching import ReleaseBatching, quoted, record_batches
from engine.release.image_table import IMAGES_AT
from engine.release.scores import UNSCORED, published_scores
from storage.atomic import remove_path
from storage.schema import CURATED

#: the most leading hex digits that cut a round's rows into ranges (16^3 = 4,096 ranges)
MAX_RANGE_DIGITS = 3

#: the image facts each streamed image has (its ``meta``), as SQL over ``images_at`` (unordered)
IMAGE_SELECT = (f"select image_id, file_name, width, height, format, num_bytes, shard_rel as shard, key, split, "
                f"kept_id, pos from {IMAGES_AT}")
#: the order of a release's curated rows
ROW_ORDER = "image_id, kind, annotation_id"


@dataclass(frozen=True)
class ImageBatch:
    """Whole images in image id order: ``metas`` (one dict per image: image_id, file_name, width,
    height, format, num_bytes, shard (portable), key, split, kept_id, pos, annotated), ``rows``
    (per image, its curated rows as dicts of the ``CURATED`` columns, score as released),
    ``table`` (all those rows as one ``CURATED`` table) and ``held_rows`` (rows held when the
    batch was made, including those read for the next)."""

    metas: list[dict[str, Any]]
    rows: list[list[dict[str, Any]]]
    table: pa.Table
    held_rows: int


def rows_select(round_: int) -> str:
    """The curated rows of round ``round_``, unordered (the release orders them by :data:`ROW_ORDER`)."""
    return f"select * exclude (curated_round) from curated where curated_round = {int(round_)}"


class SortedStream:
    """Arrow batches sorted by the column ``key``, read only as far as asked."""

    def __init__(self, batches: Iterator[pa.RecordBatch], key: str):
        self.batches, self.key = iter(batches), key
        self.pending: pa.Table | None = None

    @property
    def held(self) -> int:
        """Rows read and not yet taken."""
        return 0 if self.pending is None else self.pending.num_rows

    def through(self, last: str) -> list[pa.Table]:
        """The rows whose key is at most ``last`` (a prefix, the stream being sorted)."""
        taken = []
        while True:
            if self.pending is None:
                batch = next(self.batches, None)
                if batch is None:
                    return taken
                self.pending = pa.Table.from_batches([batch])
            n = pc.sum(pc.less_equal(self.pending.column(self.key), last)).as_py() or 0
            taken.append(self.pending.slice(0, n))
            if n < self.pending.num_rows:
                self.pending = self.pending.slice(n)
                return taken
            self.pending = None


def range_digits(rows: int, sort_rows: int) -> int:
    """How many leading hex digits of the image ids cut ``rows`` curated rows into ranges of
    about ``sort_rows`` (0: one sorted query; at most :data:`MAX_RANGE_DIGITS`)."""
    digits = 0
    while rows > sort_rows * 16**digits and digits < MAX_RANGE_DIGITS:
        digits += 1
    return digits


def sorted_by_image_id(con: duckdb.DuckDBPyConnection, select: str, order: str, batching: ReleaseBatching,
                       batch_rows: int, folder: Path | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of ``select`` (a query with an ``image_id`` column) ordered by ``order`` (which
    starts with ``image_id``), as Arrow batches of ``batch_rows`` rows (the last fewer).

    One sorted query holds every row it sorts (DuckDB's external sort still needs memory that
    grows with the rows: the curated rows of a release failed below 64-96 MiB at 0.3M rows,
    96-128 at 3.1M, 192-256 at 7.9M), so more than ``batching.sort_rows`` rows are first
    written, in one pass, under ``folder`` by the first ``d`` hex digits of their image ids
    (sha256: ranges of about equal size, and every id of a range sorts before every id of the
    next), then each range is sorted alone and streamed in turn: the same rows in the same
    order, with memory bounded by a range. Without ``folder``, or when an image id is not
    lowercase hex, one sorted query."""
    total = con.execute(f"select count(*) from ({select})").fetchall()[0][0]
    digits = range_digits(int(total), batching.sort_rows) if folder is not None else 0
    if digits and con.execute(f"select count(*) from ({select}) "
                              f"where not coalesce(regexp_matches(image_id, '^[0-9a-f]{{{digits}}}'), false)"
                              ).fetchall()[0][0]:
        digits = 0
    if not digits:
        yield from record_batches(con, f"{select} order by {order}", batch_rows)
        return
    remove_path(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    ranges = 16**digits
    con.execute(f"set partitioned_write_max_open_files = {ranges}")
    # rows buffered per open range before a flush: together about a row per KiB of the memory limit
    con.execute(f"set partitioned_write_flush_threshold = {max(1024, batching.sql_memory_mib * 1024 // ranges)}")
    con.execute(f"copy (select *, ('0x' || substr(image_id, 1, {digits}))::integer as id_range from ({select})) "
                f"to {quoted(str(folder))} (format parquet, partition_by (id_range))")

    def in_ranges() -> Iterator[pa.RecordBatch]:
        for k in range(ranges):
            part = folder / f"id_range={k}"
            if part.is_dir():
                yield from record_batches(con, f"select * from read_parquet({quoted(str(part / '*.parquet'))}, "
                                          f"hive_partitioning = false) order by {order}", batch_rows)
                remove_path(part, ignore_errors=True)

    yield from rebatched(in_ranges(), batch_rows)


def rebatched(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` re-cut into batches of ``rows`` rows (the last fewer), in order."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(held).combine_chunks()
            yield table.slice(0, rows).to_batches()[0]
            rest = table.slice(rows)
            held, count = ([rest.combine_chunks().to_batches()[0]] if rest.num_rows else []), rest.num_rows
    if count:
        yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]


def image_batches(con: duckdb.DuckDBPyConnection, round_: int, batching: ReleaseBatching,
                  work: Path | None = None) -> Iterator[ImageBatch]:
    """Every released image with its rows (module docstring); ``con``: the build's catalog
    connection (the scratch streams read through cursors of their own); ``work``: a folder for
    the streams cut into ranges (:func:`sorted_by_image_id`)."""
    images_cursor, unscored_cursor = con.cursor(), con.cursor()
    try:
        def folder(name: str) -> Path | None:
            return work / "sorted" / name if work is not None else None

        rows = SortedStream(sorted_by_image_id(con, rows_select(round_), ROW_ORDER, batching, batching.fetch_rows,
                                               folder("rows")), "image_id")
        unscored = SortedStream(sorted_by_image_id(unscored_cursor, f"select image_id, annotation_id from {UNSCORED}",
                                                   "image_id", batching, batching.fetch_rows, folder("unscored")),
                                "image_id")
        for images in sorted_by_image_id(images_cursor, IMAGE_SELECT, "image_id", batching, batching.images,
                                         folder("images")):
            if images.num_rows == 0:
                continue
            last = images.column("image_id")[images.num_rows - 1].as_py()
            taken = rows.through(last)
            ids = [t.column("annotation_id") for t in unscored.through(last)]
            yield _batch(images.to_pylist(), taken, ids, rows.held)
    finally:
        images_cursor.close()
        unscored_cursor.close()


def _batch(metas: list[dict[str, Any]], taken: list[pa.Table], unscored: list[Any], read_ahead: int) -> ImageBatch:
    """An :class:`ImageBatch` of ``metas`` and their rows (``taken``), scores published."""
    from engine.curate.parquet_io import conform

    table = conform(pa.concat_tables(taken) if taken else None, CURATED)
    prior = pa.chunked_array([c for column in unscored for c in column.chunks], pa.string())
    table = published_scores(table, prior.combine_chunks())
    rows: list[list[dict[str, Any]]] = [[] for _ in metas]
    index = {meta["image_id"]: n for n, meta in enumerate(metas)}
    for row in table.to_pylist():
        rows[index[row["image_id"]]].append(row)
    for meta, image_rows in zip(metas, rows):
        meta["annotated"] = bool(image_rows)
    return ImageBatch(metas, rows, table, table.num_rows + read_ahead)
