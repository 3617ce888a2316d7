"""A round's curation as its config asks: in one process when the round has at most ``[curation]
partition_rows`` rows (raw rows plus the previous curated set's, counted from the Parquet
footers; always with 0), else in partitions of about that many raw rows, one after another in this process
(``partition_runner = "local"``) or side by side on a Beam runner (with ``[runner]``'s
``workers`` and ``options``). ``fld curate`` and the round's curate step call it."""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow.parquet as pq

from engine.curate.config import LOCAL_RUNNER, CurationConfig
from engine.curate.curation import curate_round
from engine.curate.partitioned import curate_partitioned
from storage.layout import DataRoot


def round_rows(root: DataRoot, round_: int) -> int:
    """The rows curation of ``round_`` reads: its raw annotation rows and the previous round's
    curated rows (from the files' Parquet footers; nothing else is read)."""
    files = [*root.annotations(round_).glob("source=*/shard=*.parquet"),
             *(root.curated(round_ - 1).glob("part-*.parquet") if round_ > 0 else ())]
    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


def curate_configured(root: DataRoot, round_: int, config: CurationConfig, workers: int = 2,
                      options: Sequence[str] = (), rows_per_part: int = 1_000_000) -> dict[str, Any]:
    """Curate round ``round_`` of ``root`` as ``config`` says; returns the round's summary."""
    if config.partition_rows == 0 or round_rows(root, round_) <= config.partition_rows:
        return curate_round(root, round_, config, rows_per_part)
    runner = None
    if config.partition_runner != LOCAL_RUNNER:
        from engine.curate.partition_pipeline import beam_runner  # Beam is imported only when asked for

        runner = beam_runner(root, round_, config.to_dict(used_only=True), rows_per_part, config.partition_runner, workers, options)
    return curate_partitioned(root, round_, config, rows_per_part, runner)
