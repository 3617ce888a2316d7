"""How a release build holds its work in bounded memory: whole-image batches and a scratch database.

A build never holds a round's rows: it streams them from ordered DuckDB queries in batches of
at most ``images`` whole images (:mod:`engine.release.row_stream`), and keeps what needs every
image (names, positions, COCO ids, splits) in tables of a scratch DuckDB file in the build's
work folder, which DuckDB keeps on disk. Every statement is one sort, one join or one
aggregate into a table, each of which DuckDB spills to the work folder beyond
``sql_memory_mib``; a statement that sorts the result of a join did not (measured: DuckDB 2.0,
5M rows of 270 bytes, out of memory at 1 GiB with 2 threads), nor did several threads at 512
MiB, hence one thread by default. The settings change how much a build holds at once, never a
byte it writes, so a release's manifest does not record them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

#: the scratch database's name in the catalog connection of a build
SCRATCH = "release_work"


class RoundChanged(ValueError):
    """The round's files changed while a build streamed them (another ``fld`` wrote them)."""

    def __init__(self, what: str):
        super().__init__(f"{what} changed while the release was built (another fld command wrote the round); "
                         "build the release again")


@dataclass(frozen=True)
class ReleaseBatching:
    """``images``: images whose curated rows a build holds at once (a batch: at most this many
    whole images); ``fetch_rows``: rows per Arrow batch read from DuckDB (a batch also holds
    up to this many rows of the images after it); ``sql_memory_mib``: DuckDB's memory limit for
    the build's queries, in MiB (beyond it they spill to the work folder); ``sql_threads``:
    DuckDB's threads for them (module docstring); ``sort_rows``: the most curated rows one
    sorted query holds: a round of more is cut by the leading hex digits of its image ids into
    ranges of about this many rows, each sorted alone (:mod:`engine.release.row_stream`)."""

    images: int = 1000
    fetch_rows: int = 8192
    sql_memory_mib: int = 512
    sql_threads: int = 1
    sort_rows: int = 1_000_000

    def __post_init__(self) -> None:
        for name, least in (("images", 1), ("fetch_rows", 1), ("sql_memory_mib", 64), ("sql_threads", 1),
                            ("sort_rows", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"release batching {name} must be an integer >= {least}, got {value!r}")


def open_scratch(con: duckdb.DuckDBPyConnection, folder: Path, batching: ReleaseBatching) -> None:
    """Attach the scratch database ``folder/scratch.duckdb`` as :data:`SCRATCH` to ``con`` (an
    in-memory snapshot catalog of this build alone, so its settings touch no other reader) and
    bound DuckDB's memory, spilling under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(f"set memory_limit = '{int(batching.sql_memory_mib)}MiB'")
    con.execute(f"set threads = {int(batching.sql_threads)}")
    con.execute("set preserve_insertion_order = false")  # every stream says its order
    con.execute(f"set temp_directory = {quoted(str(folder / 'spill'))}")
    con.execute("set enable_progress_bar = false")
    con.execute(f"attach {quoted(str(folder / 'scratch.duckdb'))} as {SCRATCH}")


def record_batches(con: duckdb.DuckDBPyConnection, sql: str, rows: int) -> Iterator[pa.RecordBatch]:
    """The result of ``sql`` streamed as Arrow batches of at most ``rows`` rows (DuckDB keeps a
    sorted result in its own, spilling, memory; none of it is materialised here)."""
    yield from con.sql(sql).to_arrow_reader(rows)


def append(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """Insert ``rows`` (its columns in ``table``'s order) into the scratch table ``table``,
    through a cursor of its own, so a result ``con`` streams stays open."""
    name = f"_release_rows_{uuid.uuid4().hex[:8]}"
    cursor = con.cursor()
    try:
        cursor.register(name, rows)
        cursor.execute(f"insert into {table} select * from {name}")
    finally:
        cursor.close()


def quoted(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
