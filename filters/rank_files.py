"""``nms_cross``'s rank reference built out of core, for a round curated in partitions.

In one process the ``rank`` calibration (:mod:`filters.nms`) places each score among the
sorted scores of its source over the whole round (the *reference*: 4 or 8 bytes a judged row,
21 GB at FLD-5B's 5.4 billion rows). A round curated in partitions
(``engine.curate.partitioned``) never holds it: a score's rank depends only on the score and
its source, so

* each partition task writes its judged rows' ``(source, key)`` pairs to one Parquet file
  (:func:`write_keys`; ``key``: the score as :func:`sort_key` compares it,
  stored as float64, -0.0 as 0.0);
* DuckDB sorts the keys of every file by source and key (one window), ranks each
  ``(a + b) / (2 m)`` (``a`` = ``rank() - 1``: keys of the source below it; ``b`` = the
  window's ``count(*)``: at or below it, ties included; ``m``: the source's keys in all: the
  same integers and the same float division as :func:`filters.kernels.ranks_against`, so the
  rank is bit-identical) and writes each partition's keys and ranks under ``part=K/``
  (:func:`combine_key_files`), with its memory bounded by :data:`SQL_MEMORY_MIB` (beyond it,
  its sort spills under the scratch folder);
* each partition reads only its own pairs' ranks (:func:`read_ranks`): a :class:`RankLookup`.

A round of at most :data:`IN_MEMORY_KEYS` judged keys skips DuckDB: its reference is sorted in
memory and every partition is given it whole (at most 32 MB, and ~0.5 s less per 2M keys).
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.atomic import remove_path, write_bytes_atomic

#: DuckDB's memory limit while ranking a round's keys, in MiB (beyond it, it spills to disk)
SQL_MEMORY_MIB = 256
#: a round of at most this many judged keys is ranked in memory: its whole reference (4 or 8
#: bytes a key) is given to every partition, as cheap as a partition's own columns
IN_MEMORY_KEYS = 4_000_000
#: the file of that shared reference in the state folder
SHARED_REFERENCE = "reference.pkl"


@dataclass(frozen=True)
class RankLookup:
    """The rank of every distinct ``key`` of one partition's judged rows, per source (None:
    a null source): ``source -> (keys ascending, NaN last, float64; their ranks in [0, 1])``."""

    ranks: dict[str | None, tuple[np.ndarray, np.ndarray]]

    def of(self, source: str | None, keys: np.ndarray) -> np.ndarray:
        """The ranks of ``keys`` (any float dtype) of ``source``; every key must be in the
        lookup (a key the partition's prepare pass did not see is an engine error)."""
        known, ranks = self.ranks.get(source, (np.zeros(0), np.zeros(0)))
        wanted = canonical(keys)
        order = np.argsort(wanted)  # sorted needles: ~2x faster searches
        at = np.empty(len(wanted), np.int64)
        at[order] = np.minimum(np.searchsorted(known, wanted[order]), max(len(known) - 1, 0))
        found = (len(known) > 0) & ((known[at] == wanted) | (np.isnan(known[at]) & np.isnan(wanted)))
        if not np.all(found):
            raise RuntimeError(f"rank lookup of source {source!r} misses {int((~found).sum())} scores: "
                               "the partition's prepared ranks do not match its rows; curate the round again")
        return ranks[at]


def sort_key(scores: np.ndarray) -> np.ndarray:
    """``scores`` as float32 when that loses nothing (Parquet scores are float32: sorting and
    searching those is ~2.5x faster), else as given."""
    narrow = scores.astype(np.float32)
    return narrow if np.array_equal(narrow, scores, equal_nan=True) else scores


def canonical(keys: np.ndarray) -> np.ndarray:
    """``keys`` as float64 with -0.0 as 0.0 (equal to it in every comparison)."""
    return np.asarray(keys, np.float64) + 0.0


def write_keys(parts: list[dict[str | None, np.ndarray] | None], index: int, path: Path) -> None:
    """Partition ``index``'s reference parts (``source -> its sorted keys``, one per thread
    part; None when not calibrating by rank) as the Parquet file ``path`` (atomically)."""
    names: list[str | None] = []
    codes: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    for part in parts:
        for source, values in (part or {}).items():
            if source not in names:
                names.append(source)
            codes.append(np.full(len(values), names.index(source), np.int32))
            keys.append(canonical(values))
    code = np.concatenate(codes) if codes else np.zeros(0, np.int32)
    source = pa.array(names, pa.string()).take(pa.array(code))  # plain strings: the file names its sources
    table = pa.table({"part": pa.array(np.full(len(code), index, np.int32)), "source": source,
                      "key": pa.array(np.concatenate(keys) if keys else np.zeros(0), pa.float64())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes_atomic(buffer.getvalue(), path)


def combine_key_files(paths: list[Path], folder: Path, scratch: Path) -> None:
    """Rank every partition's keys among their source's keys of every file (module docstring)
    and write partition K's ranks under ``folder/part=K/`` (``folder`` must not exist; it is
    made, complete, by one rename; ``scratch`` holds DuckDB's spill and the staged folder)."""
    scratch.mkdir(parents=True, exist_ok=True)
    staged = scratch / f"{folder.name}.staged"
    remove_path(staged, ignore_errors=True)
    staged.mkdir()
    if sum(pq.ParquetFile(p).metadata.num_rows for p in paths) <= IN_MEMORY_KEYS:
        write_bytes_atomic(pickle.dumps(_reference(paths)), staged / SHARED_REFERENCE)
        os.replace(staged, folder)
        return
    with duckdb.connect() as con:
        con.execute(f"set memory_limit = '{SQL_MEMORY_MIB}MiB'")
        con.execute(f"set threads = {os.cpu_count() or 1}")
        con.execute("set preserve_insertion_order = false")
        con.execute(f"set temp_directory = '{_escaped(scratch / 'spill')}'")
        con.execute("set enable_progress_bar = false")
        con.execute(f"""
            copy (
                select part, source, key,
                       ((rank() over same - 1) + count(*) over same)::double
                       / (2.0 * (count(*) over (partition by source))::double) as rank
                from read_parquet($files)
                window same as (partition by source order by key)
            ) to '{_escaped(staged)}' (format parquet, partition_by (part))""", {"files": [str(p) for p in paths]})
    os.replace(staged, folder)


def read_ranks(folder: Path, index: int) -> RankLookup | dict[str | None, np.ndarray]:
    """Partition ``index``'s :class:`RankLookup` from :func:`combine_key_files`'s folder (empty
    when the partition judged no row), or the round's whole reference where it was small."""
    if (folder / SHARED_REFERENCE).exists():
        return pickle.loads((folder / SHARED_REFERENCE).read_bytes())
    files = sorted((folder / f"part={index}").glob("*.parquet"))
    if not files:
        return RankLookup({})
    table = pa.concat_tables([pq.read_table(f, columns=["source", "key", "rank"]) for f in files])
    keys, ranks = table["key"].to_numpy(), table["rank"].to_numpy()
    out: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    for source, rows in _rows_by_source(table):
        order = rows[np.argsort(keys[rows], kind="stable")]  # NaN last, as the reference sorts (equal keys: one rank)
        out[source] = (keys[order], ranks[order])
    return RankLookup(out)


def _reference(paths: list[Path]) -> dict[str | None, np.ndarray]:
    """Every source's keys of every file, sorted ascending (NaN last; float32 where that loses
    nothing, :func:`sort_key`): the reference in memory, read file by file."""
    pieces: dict[str | None, list[np.ndarray]] = {}
    for path in paths:
        table = pq.read_table(path, columns=["source", "key"])
        keys = table["key"].to_numpy()
        for source, rows in _rows_by_source(table):
            pieces.setdefault(source, []).append(keys[rows])
    out = {}
    for source, parts in pieces.items():
        keys = np.concatenate(parts)
        del parts[:]
        keys.sort()
        out[source] = sort_key(keys)
    return out


def _rows_by_source(table: pa.Table) -> list[tuple[str | None, np.ndarray]]:
    """``(source, its rows)`` for every source of ``table`` (a null source as None)."""
    source = pc.dictionary_encode(table["source"]).combine_chunks()
    codes = pc.fill_null(source.indices, -1).to_numpy()
    return [(name, rows) for code, name in [(-1, None), *enumerate(source.dictionary.to_pylist())]
            if len(rows := np.flatnonzero(codes == code))]


def _escaped(path: Path) -> str:
    return str(path).replace("'", "''")
