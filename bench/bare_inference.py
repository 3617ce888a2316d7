"""Annotators' bare inference: the registry's classes called on decoded images in a plain loop.

The baseline of ``bench.round``: no Beam, no files, no catalog. ``decoded_images`` reads every
image member of the tar shards and decodes it as the annotation pipeline does
(``storage.decode.decode_rgb`` with the same limits); ``bare_annotate`` builds one annotator
from the registry with the settings a round gives it, loads it, and calls ``annotate`` on
batches of its own ``batch_size``. Seconds throughout (``time.perf_counter``).
"""

from __future__ import annotations

import hashlib
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from annotators.base import ImageBatch, ImageItem
from annotators.registry import build_annotator
from storage.decode import DecodeLimits, decode_rgb
from storage.readers.base import IMAGE_EXTENSIONS, split_key


@dataclass(frozen=True)
class BareRun:
    """``build_s``: constructing the annotator (settings, checkpoint checks); ``load_s``: its
    ``load``; ``annotate_s``: the sum of its ``annotate`` calls (wall) and ``annotate_cpu_s`` their
    CPU seconds (this process, every thread); ``rows``: rows returned; ``batches``: ``annotate`` calls."""

    name: str
    build_s: float
    load_s: float
    annotate_s: float
    annotate_cpu_s: float
    rows: int
    batches: int


def decoded_images(shards: list[Path], limits: DecodeLimits = DecodeLimits()) -> tuple[list[list[ImageItem]], float]:
    """Every image member of ``shards`` decoded to upright RGB, one list per shard, and the
    seconds the decoding took (reading the tars not included)."""
    shard_items, seconds = [], 0.0
    for shard in shards:
        items: list[ImageItem] = []
        shard_items.append(items)
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                key, ext = split_key(member.name)
                if ext not in IMAGE_EXTENSIONS:
                    continue
                data = archive.extractfile(member).read()
                started = time.perf_counter()
                image = decode_rgb(data, limits)
                seconds += time.perf_counter() - started
                items.append(ImageItem(image_id=hashlib.sha256(data).hexdigest(), image=image, width=image.width,
                                       height=image.height, key=key, file_name=member.name,
                                       context={"annotations": [], "meta": {}}))
    return shard_items, seconds


def bare_annotate(name: str, settings: Mapping[str, Any], shard_items: list[list[ImageItem]], round_: int = 0) -> BareRun:
    """Build, load and run the annotator ``name`` over each shard's items in batches of its batch
    size, cut within each shard as the annotation pipeline cuts them."""
    started = time.perf_counter()
    annotator = build_annotator(name, **settings)
    built = time.perf_counter()
    annotator.load()
    loaded = time.perf_counter()
    size, rows, seconds, cpu, batches = max(1, int(annotator.batch_size)), 0, 0.0, 0.0, 0
    for items in shard_items:
        for first in range(0, len(items), size):
            batch = ImageBatch(items=items[first:first + size], round=round_)
            begin, begin_cpu = time.perf_counter(), time.process_time()
            rows += len(annotator.annotate(batch))
            seconds += time.perf_counter() - begin
            cpu += time.process_time() - begin_cpu
            batches += 1
    return BareRun(name, built - started, loaded - built, seconds, cpu, rows, batches)
