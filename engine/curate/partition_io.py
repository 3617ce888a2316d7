"""Reading one partition of a round curated in parts, and writing its staged parts.

A partition's raw rows and previous curated rows are read in the order the in-process
curation reads the whole round (files in path order, rows in file order), so each image's
rows come in the same order, and each row keeps its position in the whole round (the
decision trails number rows by it). Its image sizes come from the images parts of its shards,
and for ids not found there from every images part (a DuckDB scan, in file order). Its
curated rows are written sorted by the shard key of their unit, one row group per key
(:data:`engine.curate.partition_plan.KEYS_METADATA` lists them), so the next round reads
each partition's previous rows by row group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow.fs import LocalFileSystem

from engine.curate.parquet_io import RAW_DICTIONARY_COLUMNS, conform, read_parquet_files
from engine.curate.partition_plan import KEYS_METADATA, PartitionSpec, Plan, route_file
from storage.atomic import write_parquet_atomic
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, CURATED, DECISION_TRAILS, IMAGE_SIZES

#: the most rows of one row group (pyarrow's limit is 1Mi)
MAX_GROUP_ROWS = 1_000_000


@dataclass
class PartitionInput:
    """One partition's tables for ``curate_tables``, with each row's position in the whole
    round (``raw_at``, ``previous_at``: int64) and the unit of each image it holds."""

    raw: pa.Table
    raw_at: np.ndarray
    previous: pa.Table | None
    previous_at: np.ndarray
    images: pa.Table
    image_ids: pa.Array
    image_units: np.ndarray


def _routed(work: Path, kind: str, index: int, units: tuple[int, ...]) -> np.ndarray:
    """Positions in routed file ``index`` of ``kind`` of the rows that go to ``units``."""
    return np.flatnonzero(np.isin(np.load(route_file(work, kind, index)), np.array(units, np.int32)))


def read_partition(root: DataRoot, plan: Plan, spec: PartitionSpec, work: Path) -> PartitionInput:
    """The partition ``spec`` of ``plan`` (routes under ``work``)."""
    tables, at, ids, units = [], [], [], []
    offsets = plan.raw_offsets
    run: list[int] = []

    def flush() -> None:  # consecutive whole shards: one read on every core
        if run:
            table = read_parquet_files([str(root.path / plan.raw_files[i]) for i in run], ANNOTATIONS,
                                       RAW_DICTIONARY_COLUMNS)
            tables.append(table)
            at.extend(np.arange(offsets[i], offsets[i + 1]) for i in run)
            units.extend(np.full(plan.raw_rows[i], plan.raw_unit[i]) for i in run)
            ids.append(table["image_id"])
            run.clear()

    for i, routed in spec.raw:
        if not routed:
            run.append(i)
            continue
        flush()
        rows = _routed(work, "raw", i, spec.units)
        table = read_parquet_files([str(root.path / plan.raw_files[i])], ANNOTATIONS, RAW_DICTIONARY_COLUMNS)
        table = table.take(pa.array(rows))
        tables.append(table)
        at.append(offsets[i] + rows)
        units.append(np.load(route_file(work, "raw", i))[rows])
        ids.append(table["image_id"])
    flush()
    raw = pa.concat_tables(tables) if tables else read_parquet_files([], ANNOTATIONS, RAW_DICTIONARY_COLUMNS)
    previous, previous_at = _read_previous(root, plan, spec, work, ids, units)
    all_ids = pa.chunked_array([c for column in ids for c in column.chunks], pa.string())
    encoded = pc.dictionary_encode(all_ids).combine_chunks() if len(all_ids) else pa.array([], pa.string()).dictionary_encode()
    _, first = np.unique(encoded.indices.to_numpy(zero_copy_only=False), return_index=True)
    unit_per_row = np.concatenate(units).astype(np.int64) if units else np.zeros(0, np.int64)
    images = _image_sizes(root, spec, raw["image_id"])
    return PartitionInput(raw, np.concatenate(at).astype(np.int64) if at else np.zeros(0, np.int64), previous,
                          previous_at, images, encoded.dictionary, unit_per_row[first])


def _read_previous(root: DataRoot, plan: Plan, spec: PartitionSpec, work: Path, ids: list, units: list
                   ) -> tuple[pa.Table | None, np.ndarray]:
    """The partition's previous curated rows (None: the round has no previous set) and their
    positions in it; appends their image ids and units to ``ids`` and ``units``."""
    if not plan.previous_files:
        return None, np.zeros(0, np.int64)
    tables, at = [], []
    offsets = plan.previous_offsets
    for i, groups, routed in spec.previous:
        starts = np.r_[0, np.cumsum(plan.previous_groups[i])]
        unit = np.full(int(starts[-1]), -1, np.int64)
        for g in groups:
            unit[starts[g]:starts[g + 1]] = plan.previous_unit[i][g]
        if routed:
            routed_unit = np.load(route_file(work, "previous", i))
            unit = np.where(np.isin(routed_unit, np.array(spec.units, np.int32)), routed_unit, unit)
        rows = np.flatnonzero(unit >= 0)
        table = _read_rows(root.path / plan.previous_files[i], starts, rows)
        tables.append(table)
        at.append(offsets[i] + rows)
        ids.append(table["image_id"])
        units.append(unit[rows])
    if not tables:
        return CURATED.empty_table(), np.zeros(0, np.int64)
    return pa.concat_tables(tables), np.concatenate(at).astype(np.int64)


def _read_rows(path: Path, starts: np.ndarray, rows: np.ndarray) -> pa.Table:
    """Rows ``rows`` (ascending) of a curated part whose row groups start at ``starts``, as
    :data:`CURATED`: only the row groups holding them are read (a part of an older layout that
    the dataset scanner cannot cast is read whole, as ``read_parquet_files`` reads it)."""
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    try:
        fragment = ds.ParquetFileFormat().make_fragment(str(path), filesystem=LocalFileSystem(),
                                                        row_groups=groups.tolist())
        return fragment.to_table(schema=CURATED).take(pa.array(_local(starts, groups, rows)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return read_parquet_files([str(path)], CURATED).take(pa.array(rows))


def _local(starts: np.ndarray, groups: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions ``rows`` of a file as positions in the concatenation of its row ``groups``."""
    sizes = np.diff(starts)[groups]
    shift = starts[groups] - np.r_[0, np.cumsum(sizes)[:-1]]  # file position - concatenated position, per group
    return rows - shift[np.searchsorted(groups, np.searchsorted(starts, rows, side="right") - 1)]


def _image_sizes(root: DataRoot, spec: PartitionSpec, raw_ids: pa.ChunkedArray) -> pa.Table:
    """``image_id, width, height`` (status ok) of the partition's images: from its shards'
    images parts, then every part for the ids not found there (in file order both)."""
    query = "select image_id, width, height from read_parquet(?, filename = true, file_row_number = true) " \
            "where status = 'ok' and image_id is not null"
    parts = [str(root.path / p) for p in spec.image_parts]
    ok = (pc.field("status") == "ok") & pc.field("image_id").is_valid()
    try:  # a few small files: pyarrow reads them in file order without a DuckDB connection's start-up
        found = ds.dataset(parts, format="parquet").to_table(columns=IMAGE_SIZES.names, filter=ok) if parts \
            else IMAGE_SIZES.empty_table()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        with duckdb.connect() as con:
            found = con.sql(query + " order by filename, file_row_number", params=[parts]).to_arrow_table()
    wanted = pc.unique(raw_ids.combine_chunks().cast(pa.string())) if len(raw_ids) else pa.array([], pa.string())
    missing = pa.table({"i": pc.filter(wanted, pc.invert(pc.is_in(wanted, value_set=found["image_id"].combine_chunks())))})
    everything = sorted(str(p) for p in root.images.glob("part-*.parquet")) if missing.num_rows else []
    if everything:  # ids no shard of the partition holds (an image ingested twice, unknown ids): every part
        with duckdb.connect() as con:
            con.register("missing", missing)
            more = con.sql(query + " and image_id in (select i from missing) order by filename, file_row_number",
                           params=[everything]).to_arrow_table()
        found = pa.concat_tables([conform(found, IMAGE_SIZES), conform(more, IMAGE_SIZES)])
    return conform(found, IMAGE_SIZES)


def staged_name(partition: int, k: int) -> str:
    """The file name of partition ``partition``'s ``k``-th part (staged and final)."""
    return f"part-{partition:05d}-{k:03d}.parquet"


def write_curated(folder: Path, partition: int, curated: pa.Table, data: PartitionInput, plan: Plan,
                  rows_per_part: int) -> list[str]:
    """Write ``curated`` sorted by its images' unit keys, a row group per key, in parts of at
    most ``rows_per_part`` rows (at least one part); returns the file names."""
    found = pc.fill_null(pc.index_in(curated["image_id"].cast(pa.string()), value_set=data.image_ids), -1)
    found = found.to_numpy(zero_copy_only=False).astype(np.int64)
    unit = np.where(found >= 0, data.image_units[np.maximum(found, 0)] if len(data.image_units) else -1, -1)
    keys = np.array([*plan.unit_keys, ""], dtype=object)[unit]  # -1: an image the input lacked (none should)
    order = np.argsort(keys.astype(str), kind="stable")
    curated, keys = curated.take(pa.array(order)), keys[order]
    cuts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1, len(keys)]
    limit = max(1, min(rows_per_part, MAX_GROUP_ROWS))
    groups = [(int(a), int(min(hi, a + limit))) for lo, hi in zip(cuts[:-1], cuts[1:]) for a in range(lo, hi, limit)]
    parts: list[list[tuple[int, int]]] = [[]]
    for a, b in groups:
        if parts[-1] and b - parts[-1][0][0] > rows_per_part:
            parts.append([])
        parts[-1].append((a, b))
    names = []
    for k, part in enumerate(parts):
        lo, hi = (part[0][0], part[-1][1]) if part else (0, 0)
        name = staged_name(partition, k)
        write_parquet_atomic(curated.slice(lo, hi - lo), folder / name, row_groups=[b - a for a, b in part] or None,
                             metadata={KEYS_METADATA: json.dumps([str(keys[a]) for a, _ in part])})
        names.append(name)
    return names


def global_trails(trails: pa.Table, data: PartitionInput, raw_total: int) -> pa.Table:
    """``trails`` of one partition with ``row`` and ``absorbed_row`` as positions in the whole
    round (a previous row a review replaced: the round's raw rows + its position in the previous set)."""
    n = data.raw.num_rows
    row = trails["row"].to_numpy().astype(np.int64)
    carried = row >= n
    out = np.where(carried, raw_total + data.previous_at[np.maximum(row - n, 0)] if len(data.previous_at) else 0,
                   data.raw_at[np.minimum(row, max(n - 1, 0))] if n else 0)
    absorbed = trails["absorbed_row"]
    mask = absorbed.is_null().to_numpy(zero_copy_only=False)
    local = pc.fill_null(absorbed, 0).to_numpy().astype(np.int64)
    moved = np.where(mask, 0, data.raw_at[np.minimum(local, max(n - 1, 0))] if n else 0)
    columns = {"row": pa.array(out.astype(np.int32)),
               "absorbed_row": pa.array(moved.astype(np.int32), mask=mask)}
    return pa.Table.from_arrays([columns.get(f.name, trails[f.name]) for f in DECISION_TRAILS], schema=DECISION_TRAILS)


def write_trails(folder: Path, partition: int, trails: pa.Table, rows_per_part: int) -> list[str]:
    """Write a partition's trails in parts of at most ``rows_per_part`` rows; returns the names."""
    names = []
    for k, lo in enumerate(range(0, max(trails.num_rows, 1), rows_per_part)):
        names.append(staged_name(partition, k))
        write_parquet_atomic(trails.slice(lo, rows_per_part), folder / names[-1])
    return names
