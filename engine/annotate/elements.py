"""The elements that flow through the annotation pipeline.

``ShardTask`` (one per shard, made by the driver) -> ``ImageJob`` (one per decoded image) ->
``Outcome`` (one per image and annotator: rows, or the error that stopped it). Keyed by
``(source, shard_id)`` they are grouped so each (round, source, shard) is written as one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from annotators.base import ImageItem
from storage.decode import DecodeLimits, decode_rgb


@dataclass(frozen=True)
class ShardTask:
    """One shard to annotate with ``sources`` (annotator names) in ``round``."""

    shard_id: str
    shard: str  # absolute path
    format: str  # reader name: tar | folder | parquet
    sources: tuple[str, ...]
    round: int
    images: int = 0  # ok images ingested: this shard's share of the progress bar


@dataclass
class ImageJob:
    """An image of ``shard_id`` bound for the annotators in ``sources``, still encoded.

    Jobs carry the compressed bytes; :meth:`item` decodes them where the annotator runs
    (once per process: the decoded image is memoised and never pickled), so a runner that
    serialises elements between steps moves kilobytes, not decoded megapixels.
    """

    shard_id: str
    sources: tuple[str, ...]
    key: str
    name: str
    image_id: str
    data: bytes
    meta: dict[str, Any]
    context_rows: list[dict[str, Any]]
    _decoded: ImageItem | None = field(default=None, repr=False, compare=False)
    _served: set[str] = field(default_factory=set, repr=False, compare=False)

    def item(self, limits: DecodeLimits) -> ImageItem:
        """The upright RGB image with its context; raises ``ImageRejected`` when it cannot decode."""
        if self._decoded is None:
            image = decode_rgb(self.data, limits)
            self._decoded = ImageItem(image_id=self.image_id, image=image, width=image.width,
                                      height=image.height, key=self.key, file_name=self.name,
                                      context={"annotations": self.context_rows, "meta": self.meta})
        return self._decoded

    def done(self, source: str) -> None:
        """``source`` has annotated this image; the pixels go once every source has."""
        self._served.add(source)
        if self._served.issuperset(self.sources):
            self._decoded = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_decoded"] = None
        return state


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
        return cls(source=source, shard_id=job.shard_id, key=job.key, image_id=job.image_id,
                   rows=rows or [], error=error)


@dataclass(frozen=True)
class ShardOpened:
    """Sentinel sent once per (source, shard) so even a shard with no rows gets its file."""

    source: str
    shard_id: str
    shard: str
    round: int
