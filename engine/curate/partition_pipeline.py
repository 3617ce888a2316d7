"""The partitions of a round's curation as a Beam pipeline, on any runner of
``engine.annotate.runners`` (``--runner dask`` with 2 workers curates 2 partitions at once).

One element per partition; a DoFn runs ``engine.curate.partitioned.run_task`` on it, which
reads the plan and inputs from the data root and writes the partition's parts and marker
there (atomically, under fixed names: a bundle Beam retries rewrites the same files). The
workers must therefore see the data root at the same path (one machine, or a shared file
system). The driver waits for the pipeline, then writes the summary.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from engine.annotate.runners import run_to_completion, runner_options
from engine.annotate.workers import isolate_workers
from engine.curate.partitioned import Runner, run_task
from storage.layout import DataRoot


class CuratePartition(beam.DoFn):
    """Runs one task (curate, or a hooked rule's prepare pass) over the partition it is given."""

    def __init__(self, root: str, round_: int, config: dict[str, Any], rows_per_part: int, task: str) -> None:
        self.root, self.round, self.config, self.rows_per_part, self.task = root, round_, config, rows_per_part, task

    def process(self, index: int) -> Iterator[int]:
        run_task(self.root, self.round, self.config, self.rows_per_part, self.task, index)
        yield index


def beam_runner(root: DataRoot, round_: int, config: dict[str, Any], rows_per_part: int, runner: str, workers: int,
                options: Sequence[str] = ()) -> Runner:
    """A ``run(task, pending)`` for ``curate_partitioned`` that runs the pending partitions as
    one pipeline on Beam runner ``runner`` (``workers``: its worker processes; ``options``: more
    Beam flags, e.g. ``--dask_client_address=HOST:PORT``)."""
    flags_of = runner_options  # checks the runner (and its package) before any pipeline starts
    flags_of(runner, workers, 1, list(options))

    def run(task: str, pending: list[int]) -> None:
        if not pending:
            return
        isolate_workers()
        pipeline = beam.Pipeline(options=PipelineOptions(flags_of(runner, workers, len(pending), list(options))))
        _ = (pipeline
             | "Partitions" >> beam.Create(pending)
             | "Spread" >> beam.Reshuffle()
             | "Curate" >> beam.ParDo(CuratePartition(str(root.path), round_, config, rows_per_part, task)))
        run_to_completion(pipeline)

    return run
