"""The elements that flow through the annotation pipeline.

``ShardTask`` (one per shard, made by the driver) -> ``ImageJob`` (one per decoded image) ->
``Outcome`` (one per image and annotator: rows, or the error that stopped it). Keyed by
``(source, shard_id)`` they are grouped so each (round, source, shard) is written as one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from annotators.base import ImageItem


@dataclass(frozen=True)
class ShardTask:
    """One shard to annotate with ``sources`` (annotator names) in ``round``."""

    shard_id: str
    shard: str  # absolute path
    format: str  # reader name: tar | folder | parquet
    sources: tuple[str, ...]
    round: int


@dataclass
class ImageJob:
    """A decoded image of ``shard_id``, bound for the annotators in ``sources``."""

    shard_id: str
    sources: tuple[str, ...]
    item: ImageItem


@dataclass
class SourceBatch:
    """A batch of images of one shard for the annotator ``source``."""

    source: str
    jobs: list[ImageJob]


@dataclass
class Outcome:
    """What one annotator made of one image: rows, or an ``error`` ``(stage, reason)``."""

    source: str
    shard_id: str
    key: str
    image_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[str, str] | None = None

    @classmethod
    def of(cls, job: ImageJob, source: str, rows: list[dict[str, Any]] | None = None,
           error: tuple[str, str] | None = None) -> "Outcome":
        return cls(source=source, shard_id=job.shard_id, key=job.item.key, image_id=job.item.image_id,
                   rows=rows or [], error=error)


@dataclass(frozen=True)
class ShardOpened:
    """Sentinel sent once per (source, shard) so even a shard with no rows gets its file."""

    source: str
    shard_id: str
    shard: str
    round: int
