"""The Beam annotation pipeline: shards -> read -> RunInference per annotator (decode + annotate) -> files.

::

    ShardTask --ReadShardImages--> SourceBatch(A) --RunInference(A): decode, annotate--> Outcome --+
                 |  (unreadable images: Outcome with error; one ShardOpened per  |
                 |   source so empty shards still get a file)                     |
                 +--------------------------------------------------------------> Flatten
                                                                                    |
      GroupByKey((source, shard)) --WriteShardAnnotations--> annotation file, error file, marker

The last transform depends on every other one (Beam's Dask runner computes only the last).
Workers read the shards and the images parts straight from the data root (a shared file
system on a cluster) and never open the DuckDB catalog.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Iterable, Iterator

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.ml.inference.base import RunInference

from engine.annotate.elements import ImageJob, Outcome, ShardOpened, ShardTask, SourceBatch
from engine.annotate.handler import AnnotatorModelHandler
from storage import schema
from storage.atomic import write_parquet_atomic, write_text_atomic
from storage.layout import DataRoot
from storage.readers import READERS

LOG = logging.getLogger("fld.annotate")


def _ok_images(root: DataRoot, shard_id: str) -> dict[str, str]:
    """key -> image_id of the shard's images ingested with status ok."""
    table = pq.read_table(root.images_part(shard_id), columns=["key", "image_id", "status"])
    return {k: i for k, i, s in zip(*(table.column(c).to_pylist() for c in ("key", "image_id", "status")))
            if s == schema.IMAGE_STATUS_OK}


def _context_rows(root: DataRoot, task: ShardTask) -> dict[str, list[dict[str, Any]]]:
    """This round's rows of the shard from sources not being run now, by image id."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    base = root.annotations(task.round)
    for path in sorted(base.glob(f"source=*/shard={task.shard_id}.parquet")):
        if path.parent.name.split("=", 1)[1] in task.sources:
            continue
        for row in pq.read_table(path).to_pylist():
            by_image.setdefault(row["image_id"], []).append(row)
    return by_image


class ReadShardImages(beam.DoFn):
    """ShardTask -> per-source batches of ImageJobs, dead-letter Outcomes and ShardOpened.

    Images travel encoded; each annotator's handler decodes them (see ``ImageJob.item``).

    Batches are cut here, within a shard, at each annotator's ``max_batch_size`` (from its
    ``batch_elements_kwargs``), and RunInference runs with ``with_no_batching()``. Beam's
    ``BatchElements`` flushes its last batch in ``finish_bundle``, whose output Beam 2.77's
    Dask runner drops; batching here gives the same batches on every runner. One output of
    mixed types is split downstream with ``Filter`` for the same reason (the Dask runner does
    not route tagged outputs).
    """

    def __init__(self, root: str, batch_sizes: dict[str, int], sources_needing_context: frozenset[str]):
        self.root, self.batch_sizes = root, batch_sizes
        self.needing_context = sources_needing_context

    def _dead(self, task: ShardTask, key: str, image_id: str | None, stage: str, reason: str) -> Iterator:
        for source in task.sources:
            yield Outcome(source, task.shard_id, key, image_id, error=(stage, reason))

    def _jobs(self, task: ShardTask, root: DataRoot) -> Iterator[ImageJob | Outcome]:
        ok = _ok_images(root, task.shard_id)
        context = _context_rows(root, task) if self.needing_context & set(task.sources) else {}
        for record in READERS[task.format](task.shard).records():
            image_id = ok.pop(record.key, None)  # a repeated key: only its first record was ingested
            if image_id is None:  # errors and duplicates were settled at ingest
                continue
            if hashlib.sha256(record.data or b"").hexdigest() != image_id:
                yield from self._dead(task, record.key, image_id, "read", "image bytes changed since ingest")
                continue
            yield ImageJob(task.shard_id, task.sources, key=record.key, name=record.name, image_id=image_id,
                           data=record.data, meta=record.meta, context_rows=context.get(image_id, []))

    def process(self, task: ShardTask) -> Iterator:
        for source in task.sources:
            yield ShardOpened(source, task.shard_id, task.shard, task.round)
        pending: dict[str, list[ImageJob]] = {source: [] for source in task.sources}
        try:
            for element in self._jobs(task, DataRoot(self.root)):
                if isinstance(element, Outcome):
                    yield element
                    continue
                for source, jobs in pending.items():
                    jobs.append(element)
                    if len(jobs) >= self.batch_sizes[source]:
                        yield SourceBatch(source, jobs)
                        pending[source] = []
        except Exception as exc:  # an unreadable shard is a dead letter, not a failed run
            yield from self._dead(task, "<shard>", None, "read", f"{type(exc).__name__}: {exc}")
        for source, jobs in pending.items():
            if jobs:
                yield SourceBatch(source, jobs)


def _key(element: Outcome | ShardOpened) -> tuple[tuple[str, str], Any]:
    return (element.source, element.shard_id), element


class WriteShardAnnotations(beam.DoFn):
    """Write one (round, source, shard): annotations, dead letters, then the marker."""

    def __init__(self, root: str, round_: int):
        self.root, self.round = root, int(round_)

    def process(self, keyed: tuple[tuple[str, str], Iterable[Any]]) -> Iterator[dict[str, Any]]:
        (source, shard_id), elements = keyed
        root = DataRoot(self.root)
        rows: dict[str, dict[str, Any]] = {}
        errors: list[dict[str, Any]] = []
        images, shard = set(), ""
        for element in elements:
            if isinstance(element, ShardOpened):
                shard = element.shard
                continue
            images.add(element.key)
            if element.error is not None:
                stage, reason = element.error
                errors.append({"round": self.round, "stage": stage, "source": source, "shard": shard_id,
                               "key": element.key, "image_id": element.image_id, "reason": reason,
                               "created_at": schema.utc_now()})
            for row in element.rows:
                rows.setdefault(row["annotation_id"], row)  # identical output = same id = one row
        ordered = [rows[k] for k in sorted(rows)]
        write_parquet_atomic(schema.table_from_rows(ordered, schema.ANNOTATIONS),
                             root.annotation_shard(self.round, source, shard_id))
        errors.sort(key=lambda e: (e["key"], e["stage"]))
        error_path = root.error_shard(self.round, source, shard_id)
        if errors:
            write_parquet_atomic(schema.table_from_rows(errors, schema.ERRORS), error_path)
        elif error_path.exists():
            error_path.unlink()  # an earlier attempt's dead letters no longer apply
        summary = {"round": self.round, "source": source, "shard_id": shard_id, "shard": shard,
                   "images": len(images), "rows": len(ordered), "errors": len(errors)}
        write_text_atomic(json.dumps(summary, sort_keys=True), root.annotation_marker(self.round, source, shard_id))
        root.annotation_progress(self.round, source, shard_id).unlink(missing_ok=True)  # the marker counts now
        LOG.info("annotated %s with %s: %d images, %d rows, %d errors", shard_id, source,
                 summary["images"], summary["rows"], summary["errors"])
        yield summary


def build_pipeline(pipeline: beam.Pipeline, root: DataRoot, tasks: list[ShardTask],
                   handlers: dict[str, AnnotatorModelHandler], needing_context: frozenset[str]) -> beam.PCollection:
    """Add the annotation transforms for ``tasks`` to ``pipeline``; returns the summaries."""
    batch_sizes = {name: int(h.batch_elements_kwargs().get("max_batch_size", 1)) for name, h in handlers.items()}
    read = (pipeline
            | "ShardTasks" >> beam.Create(tasks)
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadAndDecode" >> beam.ParDo(ReadShardImages(str(root.path), batch_sizes, needing_context)))
    branches = [read | "NotBatches" >> beam.Filter(lambda e: not isinstance(e, SourceBatch))]
    for name, handler in handlers.items():
        branches.append(read
                        | f"Select[{name}]" >> beam.Filter(lambda e, n=name: isinstance(e, SourceBatch) and e.source == n)
                        | f"Jobs[{name}]" >> beam.Map(lambda batch: batch.jobs)
                        | f"Annotate[{name}]" >> RunInference(handler.with_no_batching()))
    round_ = next(iter(tasks)).round if tasks else 0
    return (branches
            | "Together" >> beam.Flatten()
            | "KeyBySourceShard" >> beam.Map(_key)
            | "GroupBySourceShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShardAnnotations(str(root.path), round_)))
