"""``fld annotate``: plan the (shard, annotator) work of a round and run it on Beam.

Resume and idempotence: a (round, source, shard) whose marker exists is done and skipped; the
rest is (re)computed and its files replaced atomically. Annotation ids are deterministic, so a
killed run re-run gives exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from annotators.registry import annotator_class
from engine.annotate.decoding import decode_thread_count
from engine.annotate.elements import ShardTask
from engine.annotate.progress import AnnotateProgress, ImageProgress
from engine.annotate.runners import DEFAULT_WAVE_IMAGES, run_to_completion, runner_options
from engine.annotate.workers import isolate_workers
from storage.catalog import Catalog, publish_views
from storage.decode import DecodeLimits
from storage.layout import DataRoot


def build_pipeline(*args: Any) -> None:
    """:func:`engine.annotate.pipeline.build_pipeline`, imported when a run needs it: Beam's
    RunInference imports torch (~3 s), which every other ``fld`` command can do without."""
    from engine.annotate.pipeline import build_pipeline as build

    build(*args)


def plan_waves(tasks: list[ShardTask], wave_size: int = 0, wave_images: int = 0) -> list[list[ShardTask]]:
    """The tasks cut, in order, into pipeline runs of at most ``wave_size`` shards and at most
    ``wave_images`` images (0: no such limit); a shard bigger than ``wave_images`` is a wave of its own."""
    waves: list[list[ShardTask]] = []
    images = 0
    for task in tasks:
        full = waves and ((wave_size and len(waves[-1]) >= wave_size)
                          or (wave_images and images + task.images > wave_images))
        if not waves or full:
            waves.append([])
            images = 0
        waves[-1].append(task)
        images += task.images
    return waves


@dataclass
class AnnotateRequest:
    """One annotation run: ``annotators`` maps registry names to their settings (config tables).

    ``runner``: a name from ``engine.annotate.runners.RUNNERS``; ``workers``: worker processes for the
    multi-process runner; ``pipeline_args``: extra Beam flags passed through untouched.
    ``wave_size``: shards per pipeline run (0: no limit); ``wave_images``: images per pipeline
    run (0: no limit; a shard is never split, so a wave holds at least one shard). Files are
    written when a run's grouping step completes, so a wave's rows are in memory together:
    bounded waves bound the memory (about 34 KB per image at FLD-5B's ~40 rows per image) and
    make progress durable sooner (a killed run loses at most one wave), at the price of one
    pipeline start per wave (about a second).
    ``decode_threads``: threads each worker decodes a batch's images on (0: its cores, at most 4).
    ``progress``: the tqdm bar of (annotator x image) units; ``on_progress``: called with an
    :class:`~engine.annotate.progress.AnnotateProgress` whenever that count moves (from a thread).
    """

    round: int
    annotators: Mapping[str, Mapping[str, Any]]
    runner: str = "direct"
    workers: int = 2
    pipeline_args: list[str] = field(default_factory=list)
    limits: DecodeLimits = DecodeLimits()
    progress: bool = True
    wave_size: int = 0
    wave_images: int = DEFAULT_WAVE_IMAGES
    decode_threads: int = 0
    on_progress: Callable[[AnnotateProgress], None] | None = None

    def __post_init__(self) -> None:
        if self.round < 0:
            raise ValueError(f"round must be >= 0, got {self.round}")
        if not self.annotators:
            raise ValueError("name at least one annotator")
        for name in self.annotators:
            annotator_class(name)  # unknown names raise, listing the known ones
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.wave_size < 0:
            raise ValueError(f"wave_size must be >= 0, got {self.wave_size}")
        if self.wave_images < 0:
            raise ValueError(f"wave_images must be >= 0, got {self.wave_images}")
        decode_thread_count(self.decode_threads)


def plan_tasks(root: DataRoot, round_: int, sources: list[str]) -> list[ShardTask]:
    """One task per ingested shard that still lacks a marker for some source."""
    with Catalog.reading(root) as catalog:
        shards = catalog.query("select shard_id, shard, format, images_ok from shards where images_ok > 0 "
                               "order by shard")
    tasks = []
    for shard_id, shard, fmt, images in shards:
        todo = tuple(s for s in sources if not root.annotation_marker(round_, s, shard_id).exists())
        if todo:
            tasks.append(ShardTask(shard_id=shard_id, shard=shard, format=fmt, sources=todo, round=round_,
                                   images=int(images)))
    return tasks


def read_markers(root: DataRoot, round_: int) -> list[dict[str, Any]]:
    """The per-(source, shard) summaries of every completed unit of the round."""
    return [json.loads(p.read_text()) for p in sorted(root.annotations(round_).glob("source=*/_done/*.json"))]


def annotate(root: DataRoot, request: AnnotateRequest) -> dict[str, Any]:
    """Run the round's annotation; returns totals per source over every completed shard."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from engine.annotate.handler import AnnotatorModelHandler

    sources = list(request.annotators)
    handlers = {name: AnnotatorModelHandler(name, request.annotators[name], request.round, request.limits,
                                            progress_root=root, decode_threads=request.decode_threads)
                for name in sources}
    needing_context = frozenset(n for n in sources if "annotations" in annotator_class(n).needs)
    tasks = plan_tasks(root, request.round, sources)
    units = sum(len(t.sources) for t in tasks)
    waves = plan_waves(tasks, request.wave_size, request.wave_images)
    isolate_workers()  # worker subprocesses out of reach of a terminal's Ctrl-C: the engine stops them
    with ImageProgress(root, request.round, tasks, request.progress and bool(tasks), request.on_progress):
        for wave in waves:
            flags = runner_options(request.runner, request.workers, len(wave), request.pipeline_args)
            pipeline = beam.Pipeline(options=PipelineOptions(flags))
            build_pipeline(pipeline, root, wave, handlers, needing_context)
            run_to_completion(pipeline)
    publish_views(root)  # the workers added Parquet files only
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for marker in read_markers(root, request.round):
        if marker["source"] in sources:
            totals[marker["source"]].update(shards=1, images=marker["images"], rows=marker["rows"],
                                            errors=marker["errors"])
    return {"round": request.round, "units_run": units,
            "sources": {s: dict(totals[s]) for s in sources}}
