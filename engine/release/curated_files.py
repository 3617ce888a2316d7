"""A release's curated rows as Parquet (``data/curated-KKKKK-of-NNNNN.parquet``), written as a stream.

Rows come in the release's order (image_id, kind, annotation_id) in batches of any size; each
file holds ``rows_per_file`` rows (the last the rest) in row groups of ``row_group_size`` from
its start (the last the rest), zstd, the ``CURATED`` schema with the released ``score``. The
writer holds at most one row group.

The bytes are those one ``pq.write_table`` of the whole round's table gave when releases were
built in memory. Parquet pages depend on how a column is chunked inside a row group, and that
table came from DuckDB in chunks of :data:`QUERY_CHUNK_ROWS` rows (the released ``score``, made
afterwards, in one chunk), so each row group is cut into the same chunks before it is written.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.release.batching import RoundChanged

#: rows per Arrow chunk of a DuckDB query result (its row group size), the chunks of the table
#: releases were once written from
QUERY_CHUNK_ROWS = 122_880
#: the column made in one chunk (module docstring)
WHOLE_COLUMN = "score"


class CuratedFiles:
    """``data/`` under ``stage`` for ``total_rows`` rows (module docstring); :meth:`add` tables of
    the ``CURATED`` schema in order, then :meth:`close`."""

    def __init__(self, stage: Path, total_rows: int, rows_per_file: int, row_group_size: int):
        self.stage, self.total, self.per_file, self.per_group = stage, total_rows, rows_per_file, row_group_size
        self.files = max(1, -(-total_rows // rows_per_file))
        self.done = 0  # rows written
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.writer: pq.ParquetWriter | None = None
        self.counts: dict[str, int] = {}
        (stage / "data").mkdir(parents=True, exist_ok=True)

    def _group_end(self) -> int:
        """The global row number where the row group holding row :attr:`done` ends."""
        file_start = self.done // self.per_file * self.per_file
        file_end = min(file_start + self.per_file, self.total)
        return min(file_start + (self.done - file_start) // self.per_group * self.per_group + self.per_group, file_end)

    def add(self, table: pa.Table) -> None:
        """Append ``table``'s rows, writing every row group they complete."""
        if table.num_rows:
            self.pending.append(table)
            self.pending_rows += table.num_rows
        if self.done + self.pending_rows > self.total:
            raise RoundChanged(f"the curated rows ({self.total} counted, more streamed)")
        while self.done < self.total and self.pending_rows >= self._group_end() - self.done:
            self._write_group(self._group_end() - self.done)

    def _write_group(self, rows: int) -> None:
        rest = pa.concat_tables(self.pending)
        group, rest = rest.slice(0, rows), rest.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if self.done % self.per_file == 0:
            if self.writer is not None:
                self.writer.close()
            index = self.done // self.per_file
            rel = f"data/curated-{index:05d}-of-{self.files:05d}.parquet"
            self.writer = pq.ParquetWriter(self.stage / rel, group.schema, compression="zstd")
            self.counts[rel] = min(self.per_file, self.total - self.done)
        self.writer.write_table(_query_chunks(group, self.done), row_group_size=self.per_group)
        self.done += rows

    def close(self) -> dict[str, int]:
        """Close the last file; returns rows per file (relative paths, in order)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.done != self.total or self.pending_rows:
            raise RoundChanged(f"the curated rows ({self.total} counted, {self.done + self.pending_rows} streamed)")
        return self.counts


def _query_chunks(group: pa.Table, first: int) -> pa.Table:
    """``group`` (rows ``first``, ... of the release) chunked as the query result was: every
    column cut where a multiple of :data:`QUERY_CHUNK_ROWS` falls, :data:`WHOLE_COLUMN` whole."""
    cuts = [n - first for n in range((first // QUERY_CHUNK_ROWS + 1) * QUERY_CHUNK_ROWS, first + group.num_rows,
                                     QUERY_CHUNK_ROWS)]
    bounds = [0, *cuts, group.num_rows]
    columns = []
    for name in group.column_names:
        whole = group.column(name).combine_chunks()
        pieces = [whole] if name == WHOLE_COLUMN else [whole.slice(a, b - a) for a, b in zip(bounds, bounds[1:])]
        columns.append(pa.chunked_array(pieces, type=whole.type))
    return pa.Table.from_arrays(columns, schema=group.schema)
