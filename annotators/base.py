"""The annotator contract every specialist and the Florence-2 model meet.

An annotator turns a batch of decoded, upright RGB images into canonical annotation rows
(dicts of the columns of ``storage.schema.ANNOTATIONS``, built with
``storage.schema.annotation_row``). Coordinates are absolute pixels of the upright image,
origin top-left; boxes ``[x0, y0, x1, y1]``; OCR quads 8 values clockwise from top-left.
Scores are stored as the annotator reported them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from PIL import Image

from hf.errors import ModelError


@dataclass(frozen=True)
class ImageItem:
    """One decoded image: upright RGB (EXIF orientation applied), with its id and size.

    ``width``/``height`` are pixels of the upright image and equal ``image.size``.
    ``key`` is the shard key, ``file_name`` the member/file name it was read from (what COCO
    ``file_name`` fields match). ``context`` carries what earlier stages know about the
    image: ``context["annotations"]`` is the list of annotation rows already made for it in
    this round (captions for grounding, boxes for the segmenter, regions for the matcher),
    ``context["meta"]`` its sidecar metadata.
    """

    image_id: str
    image: Image.Image
    width: int
    height: int
    key: str = ""
    file_name: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ImageBatch:
    """A batch of images for one ``annotate`` call, plus the round being annotated."""

    items: Sequence[ImageItem]
    round: int = 0

    def __len__(self) -> int:
        return len(self.items)


#: an annotator cannot be built or run; the message says what to install or configure
AnnotatorError = ModelError


class Annotator(abc.ABC):
    """Base of every annotator.

    Subclasses set ``name`` (registry name, also the ``source`` column) and ``kinds`` (the
    annotation kinds they emit), take their settings as keyword arguments in ``__init__``
    (validated there: a missing model or package raises :class:`AnnotatorError` at
    construction), load heavy state lazily in :meth:`load`, and implement :meth:`annotate`.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()
    #: what ``annotate`` reads from ``ImageItem.context`` (documentation for ``fld annotators``)
    needs: ClassVar[tuple[str, ...]] = ()

    batch_size: int = 8

    @property
    def version(self) -> str:
        """Checkpoint id/hash of the model behind this annotator (``source_version``)."""
        return "0"

    def load(self) -> None:
        """Load models; called once per worker before the first batch. Idempotent."""

    @abc.abstractmethod
    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        """Annotate every image of ``batch``; return annotation rows (may be empty)."""

    def batch_elements_kwargs(self) -> dict[str, int]:
        """Batching hints for Beam's ``BatchElements`` (used by ``engine`` pipelines)."""
        return {"min_batch_size": 1, "max_batch_size": max(1, int(self.batch_size))}
