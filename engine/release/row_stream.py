"""A release's images with their curated rows, in image id order, in batches of whole images.

Three sorted streams are read side by side, each a plain ordered query (no join under a sort,
which DuckDB does not spill reliably: :mod:`engine.release.batching`): the images (the scratch
``images_at`` table, :mod:`engine.release.image_table`) in batches of ``batching.images``; the
round's curated rows by (image_id, kind, annotation_id), the order and the query the release's
Parquet has always had; and the ids whose score is a prior (:mod:`engine.release.scores`). For a
batch of images, each row stream is read up to the batch's last image id (both are sorted by
it), so a batch holds its images' rows and at most one Arrow batch (``batching.fetch_rows``) of
the images after it. ``held_rows`` says how many rows were held when a batch was made, what a
test of the bound reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.release.batching import ReleaseBatching, record_batches
from engine.release.image_table import IMAGES_AT
from engine.release.scores import UNSCORED, published_scores
from storage.schema import CURATED

#: the image facts each streamed image has (its ``meta``), as SQL over ``images_at``
IMAGE_SQL = (f"select image_id, file_name, width, height, format, num_bytes, shard_rel as shard, key, split, kept_id, "
             f"pos from {IMAGES_AT} order by image_id")


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


def rows_sql(round_: int) -> str:
    """The curated rows of round ``round_`` in the release's order (module docstring)."""
    return (f"select * exclude (curated_round) from curated where curated_round = {int(round_)} "
            "order by image_id, kind, annotation_id")


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


def image_batches(con: duckdb.DuckDBPyConnection, round_: int, batching: ReleaseBatching) -> Iterator[ImageBatch]:
    """Every released image with its rows (module docstring); ``con``: the build's catalog
    connection (the scratch streams read through cursors of their own)."""
    images_cursor, unscored_cursor = con.cursor(), con.cursor()
    try:
        rows = SortedStream(record_batches(con, rows_sql(round_), batching.fetch_rows), "image_id")
        unscored = SortedStream(record_batches(unscored_cursor, f"select image_id, annotation_id from {UNSCORED} "
                                               "order by image_id", batching.fetch_rows), "image_id")
        for images in record_batches(images_cursor, IMAGE_SQL, batching.images):
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
