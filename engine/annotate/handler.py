"""Any registered annotator as an Apache Beam ``ModelHandler`` (our own: Beam's Hugging Face
handler imports TensorFlow).

``RunInference(AnnotatorModelHandler("ocr", {}))`` loads the annotator once per worker process
(Beam's shared handle; threads of a process share it) and feeds it batches sized by the
annotator's ``batch_elements_kwargs``. Users can drop it into their own Beam pipelines.

Elements are :class:`engine.annotate.elements.ImageJob`s (an encoded image with its shard and
key, decoded here on ``decode_threads`` threads per batch); each result is an
:class:`engine.annotate.elements.Outcome` with the rows made for that image, or the error
that stopped it (dead letter). A failing batch is retried image by image so one bad image
never costs its neighbours their annotations.

Given a ``progress_root``, the handler also counts each finished batch's images in the
(round, source, shard)'s progress file there (:mod:`engine.annotate.progress`), which the
driver's bar polls; without one (the default, e.g. in a user's own pipeline) it reports nothing.
"""

from __future__ import annotations

import collections
import importlib
import os
import traceback
from typing import Any, Iterable, Mapping, Sequence

from apache_beam.ml.inference.base import ModelHandler

from annotators.base import Annotator, ImageBatch
from annotators.registry import annotator_class, build_annotator
from engine.annotate.decoding import decode_batch, decode_thread_count
from engine.annotate.elements import ImageJob, Outcome
from engine.annotate.progress import add_images
from storage.decode import DecodeLimits
from storage.layout import DataRoot

#: Pillow keeps up to this many freed image blocks (16 MiB each by default) for reuse, unless
#: PILLOW_BLOCKS_MAX says otherwise. Decoding into fresh memory costs page faults on every
#: image; with the cache, annotation measured 0.67 -> 0.96 of a bare decode loop.
DECODE_BLOCK_CACHE = 16


def configure_decode_memory() -> None:
    """Let Pillow reuse freed image memory in this process (see DECODE_BLOCK_CACHE)."""
    from PIL import Image

    if "PILLOW_BLOCKS_MAX" not in os.environ and Image.core.get_blocks_max() < DECODE_BLOCK_CACHE:
        Image.core.set_blocks_max(DECODE_BLOCK_CACHE)


def _reason(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


class AnnotatorModelHandler(ModelHandler[ImageJob, Outcome, Annotator]):
    """Wraps the annotator ``name`` built with ``settings`` (the config's table for it)."""

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None, round_: int = 0,
                 limits: DecodeLimits = DecodeLimits(), progress_root: DataRoot | None = None,
                 decode_threads: int = 0):
        super().__init__()
        decode_thread_count(decode_threads)  # a bad value fails in the driver
        #: threads that decode a batch (0: automatic, from the worker's own cores; see engine.annotate.decoding)
        self.decode_threads = int(decode_threads)
        self.name = name
        self.settings = dict(settings or {})
        self.round = int(round_)
        self.limits = limits
        self.progress_root = progress_root
        # a worker process imports the annotator's module before building it: plugins and
        # annotators registered by the caller's own code are found there too
        self.module = annotator_class(name).__module__
        # built once here too, so a bad setting fails in the driver, not on a worker
        probe = build_annotator(name, **self.settings)
        self._batching = probe.batch_elements_kwargs()

    def load_model(self) -> Annotator:
        configure_decode_memory()
        importlib.import_module(self.module)
        annotator = build_annotator(self.name, **self.settings)
        annotator.load()
        return annotator

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return self._batching

    def get_num_bytes(self, batch: Sequence[ImageJob]) -> int:
        """Encoded bytes in the batch (not a pickle of the jobs)."""
        return sum(len(job.data) for job in batch)

    def get_metrics_namespace(self) -> str:
        return f"fld_annotator_{self.name}"

    def _annotate(self, jobs: Sequence[ImageJob], model: Annotator) -> list[Outcome]:
        rows = model.annotate(ImageBatch(items=[job.item(self.limits) for job in jobs], round=self.round))
        by_image: dict[str, list[dict[str, Any]]] = {job.image_id: [] for job in jobs}
        for row in rows:
            by_image.setdefault(row["image_id"], []).append(row)
        return [Outcome.of(job, self.name, rows=by_image[job.image_id]) for job in jobs]

    def run_inference(self, batch: Sequence[ImageJob], model: Annotator,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Outcome]:
        decoded, refused = decode_batch(batch, self.limits, decode_thread_count(self.decode_threads))
        dead = [Outcome.of(job, self.name, error=("decode", reason)) for job, reason in refused]
        outcomes = dead + self._annotate_or_split(decoded, model)
        for job in batch:
            job.done(self.name)  # frees the decoded pixels once every annotator had them
        self._report(batch)
        return outcomes

    def _report(self, batch: Sequence[ImageJob]) -> None:
        """Count the batch's images in their shards' progress files (with a ``progress_root``)."""
        if self.progress_root is None:
            return
        for shard_id, images in collections.Counter(job.shard_id for job in batch).items():
            add_images(self.progress_root.annotation_progress(self.round, self.name, shard_id), images)

    def _annotate_or_split(self, batch: Sequence[ImageJob], model: Annotator) -> list[Outcome]:
        if not batch:
            return []
        try:
            return self._annotate(batch, model)
        except Exception as exc:
            if len(batch) == 1:
                return [Outcome.of(batch[0], self.name, error=("inference", _reason(exc)))]
        outcomes = []
        for job in batch:  # retry one by one: a failure is that image's dead letter only
            try:
                outcomes.extend(self._annotate([job], model))
            except Exception as exc:
                outcomes.append(Outcome.of(job, self.name, error=("inference", _reason(exc))))
        return outcomes
