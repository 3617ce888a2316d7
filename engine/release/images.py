"""A release's images: ``images/<file name>``, the WebDataset tars (one sample per image) and
``images/index.parquet``, each written as a stream.

Every ingested ``ok`` image is released, annotated or not (``annotated`` says which). Tars are
one series, ``webdataset/shard-KKKKK.tar``, so the one glob people copy,
``load_dataset("webdataset", data_files="webdataset/*.tar")``, reads all of them: every sample
has the same members, ``ID.jpg`` and ``ID.json`` (key: the image id, the sha256 of the bytes),
as ``datasets``' WebDataset builder needs (it takes the features of the first samples and gives
a member another sample lacks as None). The image member is named :data:`WDS_IMAGE_KEY`
whatever the image's format and holds the bytes exactly as ingested (a PNG stays a PNG): both
``datasets`` and the ``webdataset`` package pick the image decoder by the member's extension
and PIL then reads the format from the bytes, so no re-encoding is needed and none is done; the
JSON member says the ``format`` and the ``file_name``. ``reference`` mode: JSON-only samples
that name the source shard and key instead of holding the bytes.

Samples follow the shards' record order (shard by shard in path order; ``reference``: (shard,
key) order): :func:`copy_images` reads each shard once, writes ``images/`` and records each
image's position (the scratch ``images_at``). The samples' JSON is made while the build streams
the images in image id order (:class:`SampleDocs`: appended to a file of the work folder, each
one's place and length in a scratch table) and :func:`write_tars` then writes the tars in
position order, reading each JSON back from that file and each image's bytes from ``images/``.
:class:`IndexFile` writes ``images/index.parquet`` from the same stream. Memory: one shard's
wanted keys, one batch of images and the index's row group (at most :data:`INDEX_ROW_GROUP`
images' facts, no bytes).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from engine.dataset.locations import ImageLocation, _format_of, read_images
from engine.release.batching import SCRATCH, ReleaseBatching, append, record_batches
from engine.release.exports import sample_json, tar_member
from engine.release.image_table import COLUMNS, IMAGES, IMAGES_AT
from storage.schema import RELEASE_IMAGE_INDEX

#: the one member name every sample's image bytes have, whatever their format (module docstring)
WDS_IMAGE_KEY = "jpg"
TAR_SERIES = "shard"
#: images per row group of ``images/index.parquet`` (pyarrow's default, which it was written with)
INDEX_ROW_GROUP = 1024 * 1024


def member(meta: Mapping[str, Any], with_bytes: bool, images_per_shard: int) -> str:
    """Where an image's bytes are in the release (``webdataset/shard-K.tar#ID.jpg``) or, when
    only referenced, in its source (``SHARD#KEY``, the shard made portable)."""
    if with_bytes:
        return f"webdataset/{TAR_SERIES}-{meta['pos'] // images_per_shard:05d}.tar#{meta['image_id']}.{WDS_IMAGE_KEY}"
    return f"{meta['shard']}#{meta['key']}"


def copy_images(con: duckdb.DuckDBPyConnection, stage: Path, batching: ReleaseBatching) -> None:
    """Each image's bytes as ``images/<file name>``, read shard by shard (path order) in each
    shard's record order, and the images in that order as the scratch ``images_at``. Raises
    ``ImageBytesError`` when an image is missing or its bytes changed since ingest."""
    con.execute(f"create table {IMAGES_AT} as select *, 0::bigint as pos from {IMAGES} limit 0")
    schema = con.sql(f"select * from {IMAGES_AT} limit 0").to_arrow_table().schema
    (stage / "images").mkdir(parents=True, exist_ok=True)
    placed: list[dict[str, Any]] = []
    pos = 0
    for locations, facts in _shards(con, batching.fetch_rows):
        for location, data in read_images(locations):
            image = facts[location.image_id]
            (stage / "images" / image["file_name"]).write_bytes(data)
            placed.append({**image, "pos": pos})
            pos += 1
            if len(placed) >= batching.images:
                _place(con, placed, schema)
    _place(con, placed, schema)


def _place(con: duckdb.DuckDBPyConnection, placed: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Append ``placed`` (images with their position) to ``images_at`` and empty it."""
    if placed:
        append(con, IMAGES_AT, pa.Table.from_pylist(placed, schema=schema))
        placed.clear()


def _shards(con: duckdb.DuckDBPyConnection, fetch_rows: int) -> Iterator[tuple[dict[str, ImageLocation], dict]]:
    """Per shard in path order: its images' locations (in key order) and facts (``images`` rows)."""
    sql = f"select {', '.join(COLUMNS)} from {IMAGES} order by shard, key"
    shard, locations, facts, found = None, {}, {}, ""
    cursor = con.cursor()  # ``images_at`` is appended to while this streams
    try:
        for batch in record_batches(cursor, sql, fetch_rows):
            for image in batch.to_pylist():
                if image["shard"] != shard:
                    if locations:
                        yield locations, facts
                    shard, locations, facts, found = image["shard"], {}, {}, ""
                if not image["shard_format"]:  # a shard the shards table lacks: its reader found from its path
                    found = found or _format_of(shard)
                locations[image["image_id"]] = ImageLocation(image["image_id"], shard, image["key"],
                                                             image["shard_format"] or found, image["format"],
                                                             int(image["width"]), int(image["height"]),
                                                             int(image["num_bytes"]))
                facts[image["image_id"]] = image
        if locations:
            yield locations, facts
    finally:
        cursor.close()


class SampleDocs:
    """Each image's sample JSON (:func:`engine.release.exports.sample_json`) appended to
    ``work/samples.bin`` as the images come, with (pos, image id, file name, offset, length) in
    the scratch table ``samples``, flushed per batch."""

    TABLE = f"{SCRATCH}.samples"

    def __init__(self, con: duckdb.DuckDBPyConnection, work: Path, with_bytes: bool):
        self.con, self.path, self.with_bytes = con, work / "samples.bin", with_bytes
        work.mkdir(parents=True, exist_ok=True)
        con.execute(f"create table {self.TABLE} (pos bigint, image_id varchar, file_name varchar, "
                    "offset_bytes bigint, length_bytes bigint)")
        self.file = open(self.path, "wb")
        self.offset = 0
        self.pending: list[tuple[int, str, str, int, int]] = []

    def add(self, meta: Mapping[str, Any], rows: list[dict[str, Any]]) -> None:
        doc = sample_json(meta["image_id"], meta, rows, self.with_bytes)
        self.file.write(doc)
        self.pending.append((meta["pos"], meta["image_id"], meta["file_name"], self.offset, len(doc)))
        self.offset += len(doc)

    def flush(self) -> None:
        if self.pending:
            append(self.con, self.TABLE, pa.table(list(zip(*self.pending)),
                                                  names=["pos", "image_id", "file_name", "offset", "length"]))
            self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.file.close()


def write_tars(con: duckdb.DuckDBPyConnection, stage: Path, docs: SampleDocs, images_per_shard: int,
               fetch_rows: int) -> None:
    """The tars of WebDataset samples in position order: each image's bytes (when the release
    holds them) read back from ``images/``, its JSON from ``docs``."""
    archive: tarfile.TarFile | None = None
    sql = f"select pos, image_id, file_name, offset_bytes, length_bytes from {SampleDocs.TABLE} order by pos"
    try:
        with open(docs.path, "rb") as samples:
            for batch in record_batches(con, sql, fetch_rows):
                for pos, image_id, file_name, offset, length in zip(*(batch.column(i).to_pylist() for i in range(5))):
                    if pos % images_per_shard == 0:
                        if archive is not None:
                            archive.close()
                        (stage / "webdataset").mkdir(parents=True, exist_ok=True)
                        tar_name = f"webdataset/{TAR_SERIES}-{pos // images_per_shard:05d}.tar"
                        archive = tarfile.open(stage / tar_name, "w", format=tarfile.PAX_FORMAT)
                    if docs.with_bytes:
                        tar_member(archive, f"{image_id}.{WDS_IMAGE_KEY}", (stage / "images" / file_name).read_bytes())
                    samples.seek(offset)
                    tar_member(archive, f"{image_id}.json", samples.read(length))
    finally:
        if archive is not None:
            archive.close()


class IndexFile:
    """``images/index.parquet`` under ``stage``: one row per image in image id order (``add`` the
    images so), ``RELEASE_IMAGE_INDEX`` (``member`` only when the release holds the bytes, the
    source shard portable), in row groups of :data:`INDEX_ROW_GROUP` as ``pq.write_table`` of the
    whole index made them."""

    def __init__(self, stage: Path, with_bytes: bool, images_per_shard: int):
        (stage / "images").mkdir(parents=True, exist_ok=True)
        self.with_bytes, self.images_per_shard = with_bytes, images_per_shard
        self.writer = pq.ParquetWriter(stage / "images/index.parquet", RELEASE_IMAGE_INDEX, compression="zstd")
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, metas: list[Mapping[str, Any]]) -> None:
        self.pending.append(pa.Table.from_pylist([
            {"image_id": m["image_id"], "file_name": m["file_name"], "width": m["width"], "height": m["height"],
             "format": m["format"], "num_bytes": m["num_bytes"], "annotated": m["annotated"],
             "member": member(m, True, self.images_per_shard) if self.with_bytes else None,
             "source_shard": m["shard"], "source_key": m["key"]} for m in metas], schema=RELEASE_IMAGE_INDEX))
        self.rows += len(metas)
        self._write(final=False)

    def _write(self, final: bool) -> None:
        table = pa.concat_tables(self.pending) if self.pending else None
        while table is not None and (table.num_rows >= INDEX_ROW_GROUP or (final and table.num_rows)):
            self.writer.write_table(table.slice(0, INDEX_ROW_GROUP).combine_chunks(), row_group_size=INDEX_ROW_GROUP)
            table = table.slice(INDEX_ROW_GROUP)
        self.pending = [table] if table is not None and table.num_rows else []

    def close(self) -> int:
        """Write the rest; returns the index's rows."""
        self._write(final=True)
        self.writer.close()
        return self.rows
