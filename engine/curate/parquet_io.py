"""Reading, conforming and writing the tables of curation: raw annotation shards and curated
sets as Arrow tables (pyarrow's dataset scanner, DuckDB for layouts it cannot cast), image
sizes, and datasets written as atomic ``part-*.parquet`` files on one thread per core."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from storage.atomic import write_parquet_atomic
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, CURATED, IMAGE_SIZES

#: raw columns read dictionary-encoded (no string per row is built for them): the
#: low-cardinality ones, and ``text``, which curation encodes anyway (class labels repeat; a
#: file whose captions did not repeat is encoded by the reader, at the cost of that encode)
RAW_DICTIONARY_COLUMNS: tuple[str, ...] = ("source", "source_version", "kind", "granularity", "region_type", "text")


def _encoded_form_of(kind: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether ``kind`` is ``wanted`` with its values (top level or a list's) dictionary-encoded."""
    if pa.types.is_dictionary(kind):
        return kind.value_type == wanted
    if pa.types.is_list(kind) and pa.types.is_list(wanted):
        return _encoded_form_of(kind.value_type, wanted.value_type)
    return False


def conform(table: pa.Table | None, schema: pa.Schema, keep_dictionaries: bool = False) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing nullable ones as nulls), cast.

    ``keep_dictionaries``: a dictionary-encoded column whose values have the field's type,
    or a list column of such values, stays encoded (the field's type in the result says so)
    instead of being decoded."""
    if table is None:
        return schema.empty_table()
    columns, fields = [], []
    for f in schema:
        if f.name in table.column_names:
            column = table[f.name]
            if keep_dictionaries and _encoded_form_of(column.type, f.type):
                f = f.with_type(column.type)
            columns.append(column.cast(f.type))
        elif f.nullable:
            columns.append(pa.nulls(table.num_rows, f.type))
        else:
            raise ValueError(f"table lacks the required column {f.name!r}")
        fields.append(f)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata))


def read_parquet_files(files: list[str], schema: pa.Schema, dictionary_columns: Sequence[str] = ()) -> pa.Table:
    """Read Parquet ``files`` as one table of ``schema``, rows in file order.

    pyarrow's dataset scanner reads them on every core (missing nullable columns come back
    null); ``dictionary_columns`` (low-cardinality strings) come back dictionary-encoded
    straight from the files' dictionary pages. Files it cannot cast, such as those written
    before ``bbox``/``quad`` became variable lists (apache/arrow#35692), are read through
    DuckDB instead. :func:`conform` casts to ``schema`` (keeping the dictionaries)."""
    dictionary_type = pa.dictionary(pa.int32(), pa.string())
    read_schema = pa.schema([f.with_type(dictionary_type) if f.name in dictionary_columns else f for f in schema])
    if not files:
        return read_schema.empty_table()
    options = ds.ParquetReadOptions(dictionary_columns=list(dictionary_columns))
    try:
        table = ds.dataset(files, schema=read_schema, format=ds.ParquetFileFormat(read_options=options)).to_table()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        with duckdb.connect() as con:
            table = con.sql("select * from read_parquet(?, union_by_name = true, hive_partitioning = false)",
                            params=[files]).to_arrow_table()
    return conform(table, read_schema)


def read_raw(root: DataRoot, round_: int) -> pa.Table:
    """Every raw annotation shard of the round (all sources) as one table; the columns of
    :data:`RAW_DICTIONARY_COLUMNS` are dictionary-encoded."""
    files = sorted(str(p) for p in root.annotations(round_).glob("source=*/shard=*.parquet"))
    return read_parquet_files(files, ANNOTATIONS, RAW_DICTIONARY_COLUMNS)


def read_curated(root: DataRoot, round_: int) -> pa.Table | None:
    """The curated set of ``round_``, or None when that round was never curated."""
    files = sorted(str(p) for p in root.curated(round_).glob("part-*.parquet")) if round_ >= 0 else []
    return read_parquet_files(files, CURATED) if files else None


def read_image_sizes(root: DataRoot) -> pa.Table:
    """``image_id, width, height`` of the ingested images with status ok (DuckDB scan, in
    file order). An id listed twice (the same bytes ingested from two shards) keeps both
    rows: curation looks ids up by their first row (``engine.curate.string_index.index_in``), so
    no GROUP BY over the 64-character ids is paid for here."""
    files = sorted(str(p) for p in root.images.glob("part-*.parquet"))
    if not files:
        return IMAGE_SIZES.empty_table()
    with duckdb.connect() as con:
        table = con.sql(
            "select image_id, width, height from read_parquet(?) where status = 'ok' and image_id is not null",
            params=[files],
        ).to_arrow_table()
    return conform(table, IMAGE_SIZES)


PARALLEL_PART_ROWS = 250_000  # a table above this is written as at least one part per core


def _part_jobs(table: pa.Table, folder: Path, rows_per_part: int) -> list[tuple[pa.Table, Path]]:
    if table.num_rows > PARALLEL_PART_ROWS:  # so every core encodes a part
        rows_per_part = min(rows_per_part, max(PARALLEL_PART_ROWS, -(-table.num_rows // (os.cpu_count() or 1))))
    count = max(1, -(-table.num_rows // rows_per_part))
    return [(table.slice(k * rows_per_part, rows_per_part), folder / f"part-{k:05d}.parquet") for k in range(count)]


def _remove_stale(folder: Path, written: list[Path]) -> None:
    for stale in set(folder.glob("part-*.parquet")) - set(written):
        stale.unlink()


def write_datasets(datasets: list[tuple[pa.Table, Path]], rows_per_part: int) -> list[list[Path]]:
    """Write each ``table`` as ``folder/part-00000.parquet``... atomically and remove the
    folder's stale parts; parts are written on one thread per core (Parquet encoding and
    compression release the GIL). Returns the paths per folder."""
    jobs = [_part_jobs(table, folder, rows_per_part) for table, folder in datasets]
    flat = [job for per_folder in jobs for job in per_folder]
    with ThreadPoolExecutor(max_workers=max(1, min(len(flat), os.cpu_count() or 1))) as pool:
        done = list(pool.map(lambda job: write_parquet_atomic(*job), flat))
    out, k = [], 0
    for (_, folder), per_folder in zip(datasets, jobs):
        written = done[k:k + len(per_folder)]
        k += len(per_folder)
        _remove_stale(folder, written)
        out.append(written)
    return out
