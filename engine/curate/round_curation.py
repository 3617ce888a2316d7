"""A round's curation as its config asks: in one process (``[curation] partition_rows = 0``,
the default), or in partitions of about that many rows, one after another in this process
(``partition_runner = "local"``) or side by side on a Beam runner (with ``[runner]``'s
``workers`` and ``options``). ``fld curate`` and the round's curate step call it."""

from __future__ import annotations

from typing import Any, Sequence

from engine.curate.config import LOCAL_RUNNER, CurationConfig
from engine.curate.curation import curate_round
from engine.curate.partitioned import curate_partitioned
from storage.layout import DataRoot


def curate_configured(root: DataRoot, round_: int, config: CurationConfig, workers: int = 2,
                      options: Sequence[str] = (), rows_per_part: int = 1_000_000) -> dict[str, Any]:
    """Curate round ``round_`` of ``root`` as ``config`` says; returns the round's summary."""
    if config.partition_rows == 0:
        return curate_round(root, round_, config, rows_per_part)
    runner = None
    if config.partition_runner != LOCAL_RUNNER:
        from engine.curate.partition_pipeline import beam_runner  # Beam is imported only when asked for

        runner = beam_runner(root, round_, config.to_dict(used_only=True), rows_per_part, config.partition_runner, workers, options)
    return curate_partitioned(root, round_, config, rows_per_part, runner)
