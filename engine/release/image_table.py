"""Every released image's facts as tables of the build's scratch database, never a dict of them.

``locations``: each ingested ``ok`` image once, the first by (shard, key), with its shard's
reader format (as :func:`engine.dataset.locations.image_locations` picks them). ``coco_kept``:
the round's COCO labels' image id and file name of the images they name. ``plain_names``: one
pass in (key, image id) order gives each image its safe name (:mod:`engine.release.names`),
split and portable shard path; :mod:`engine.release.name_table` makes the names unique.
``images``: image_id, file_name, shard, shard_rel (portable), shard_format, key, format
(Pillow), width, height (upright pixels), num_bytes, split (train / validation), kept_id (the
labels' COCO id, or null). ``images_at``: the same and ``pos``, the image's place in the
WebDataset tars (0, 1, ...): the shards' record order when the bytes are copied
(:func:`engine.release.images.copy_images`), (shard, key) order when referenced.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import duckdb
import pyarrow as pa

from engine.dataset.locations import EXTENSIONS, ImageLocation
from engine.dataset.splits import split_of
from engine.release.batching import SCRATCH, append, record_batches
from engine.release.name_table import CHOSEN, PLAIN, create_names
from engine.release.names import may_be_suffixed, safe_name

LOCATIONS = f"{SCRATCH}.locations"
KEPT = f"{SCRATCH}.coco_kept"
NAMED = f"{SCRATCH}.named_input"
IMAGES = f"{SCRATCH}.images"
IMAGES_AT = f"{SCRATCH}.images_at"
#: the columns of :data:`IMAGES` (and, then ``pos``, of :data:`IMAGES_AT`)
COLUMNS = ("image_id", "file_name", "shard", "shard_rel", "shard_format", "key", "format", "width", "height",
           "num_bytes", "split", "kept_id")


def create_locations(con: duckdb.DuckDBPyConnection) -> None:
    """:data:`LOCATIONS` (module docstring)."""
    con.execute(
        f"create table {LOCATIONS} as select image_id, shard, key, shard_format, format, width, height, num_bytes, "
        "meta from (select i.image_id, i.shard, i.key, coalesce(s.format, '') as shard_format, "
        "coalesce(i.format, '') as format, i.width, i.height, coalesce(i.num_bytes, 0) as num_bytes, i.meta, "
        "row_number() over (partition by i.image_id order by i.shard, i.key) as k from images i "
        "left join shards s on s.shard = i.shard where i.status = 'ok' and i.image_id is not null) where k = 1")


class StreamedLocations:
    """The images of :data:`LOCATIONS` as ``ImageLocation`` objects (sidecar meta parsed),
    streamed in (shard, key) order: the ``items()`` of the locations map that
    :func:`engine.dataset.coco_eval.coco_image_ids` reads, without the map."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fetch_rows: int):
        self.con, self.fetch_rows = con, fetch_rows

    def items(self) -> Iterator[tuple[str, ImageLocation]]:
        sql = (f"select image_id, shard, key, shard_format, format, width, height, num_bytes, meta from {LOCATIONS} "
               "order by shard, key")
        for batch in record_batches(self.con, sql, self.fetch_rows):
            for image_id, shard, key, shard_format, fmt, width, height, num_bytes, meta in zip(
                    *(batch.column(i).to_pylist() for i in range(9))):
                yield image_id, ImageLocation(image_id, shard, key, shard_format, fmt, int(width), int(height),
                                              int(num_bytes), json.loads(meta) if meta else {})


def create_kept(con: duckdb.DuckDBPyConnection, kept: Mapping[str, int], file_names: Mapping[int, str]) -> int:
    """:data:`KEPT` from ``kept`` (our image id -> the labels' id) and ``file_names`` (their id ->
    file name), then :data:`NAMED` (each location with its kept id and the name it is given: the
    labels' file name, else its key); returns the largest kept id (0 without any)."""
    con.execute(f"create table {KEPT} (image_id varchar, coco_id bigint, given varchar)")
    ids = list(kept)
    for start in range(0, len(ids), 100_000):
        chunk = ids[start:start + 100_000]
        append(con, KEPT, pa.table({"image_id": chunk, "coco_id": pa.array([kept[i] for i in chunk], pa.int64()),
                                    "given": [file_names.get(kept[i], "") for i in chunk]}))
    con.execute(f"create table {NAMED} as select l.*, k.coco_id as kept_id, coalesce(nullif(k.given, ''), l.key) "
                f"as given from {LOCATIONS} l left join {KEPT} k on k.image_id = l.image_id")
    return max(kept.values(), default=0)


def create_images(con: duckdb.DuckDBPyConnection, eval_fraction: float, seed: int, portable: Callable[[str], Any],
                  fetch_rows: int) -> None:
    """:data:`PLAIN` in one pass over :data:`NAMED` in (key, image id) order, the unique names
    and :data:`IMAGES`; ``portable``: a shard path as a release may hold it."""
    con.execute(f"create table {PLAIN} (image_id varchar, ord bigint, plain varchar, folded varchar, "
                "suffix_like boolean, split varchar, shard varchar, shard_rel varchar, shard_format varchar, "
                "key varchar, format varchar, width integer, height integer, num_bytes bigint, kept_id bigint)")
    shard_rel = functools.lru_cache(maxsize=4096)(lambda shard: portable(shard))
    sql = (f"select image_id, given, shard, shard_format, key, format, width, height, num_bytes, kept_id from {NAMED} "
           "order by key, image_id")
    ord_ = 0
    for batch in record_batches(con, sql, fetch_rows):
        ids, given, shards, formats = (batch.column(name).to_pylist() for name in ("image_id", "given", "shard",
                                                                                    "format"))
        plain = [safe_name(name, fmt, EXTENSIONS.get(fmt, "bin"), image_id)
                 for image_id, name, fmt in zip(ids, given, formats)]
        folded = [name.casefold() for name in plain]
        append(con, PLAIN, pa.table({
            "image_id": ids, "ord": pa.array(range(ord_, ord_ + len(ids)), pa.int64()), "plain": plain,
            "folded": folded, "suffix_like": [may_be_suffixed(name) for name in folded],
            "split": [split_of(i, eval_fraction, seed) for i in ids], "shard": shards,
            "shard_rel": [shard_rel(shard) for shard in shards], "shard_format": batch.column("shard_format"),
            "key": batch.column("key"), "format": formats, "width": batch.column("width"),
            "height": batch.column("height"), "num_bytes": batch.column("num_bytes"),
            "kept_id": batch.column("kept_id")}))
        ord_ += len(ids)
    create_names(con, fetch_rows)
    columns = ", ".join(f"p.{c}" if c != "file_name" else "coalesce(c.file_name, p.plain) as file_name"
                        for c in COLUMNS)
    con.execute(f"create table {IMAGES} as select {columns} from {PLAIN} p "
                f"left join {CHOSEN} c on c.image_id = p.image_id")


def create_key_positions(con: duckdb.DuckDBPyConnection) -> None:
    """:data:`IMAGES_AT` in (shard, key) order: the tars of a release that references its images."""
    con.execute(f"create table {IMAGES_AT} as select *, row_number() over (order by shard, key, image_id) - 1 "
                f"as pos from {IMAGES}")


def split_sizes(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Images per split of :data:`IMAGES`, in split order."""
    return {split: int(n) for split, n in
            con.execute(f"select split, count(*) from {IMAGES} group by split order by split").fetchall()}
