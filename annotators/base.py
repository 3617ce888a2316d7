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


@dataclass(frozen=True)
class Rows:
    """Which annotation rows of a round an annotator reads (``Annotator.reads``) or emits
    (``Annotator.emits``); a field left ``None`` matches any value.

    ``kind``: a ``storage.schema`` kind (caption, region, phrase). ``derived``: True for rows
    with a ``parent_id`` (made from another row: its mask, its score, a candidate text for
    it), False for rows without one. ``region_type``: of regions (object, ocr, ...).
    ``source``: (in ``reads`` only) the rows of that annotator alone.
    """

    kind: str
    derived: bool | None = None
    region_type: str | None = None
    source: str | None = None

    def may_hold(self, emitted: Rows, source: str) -> bool:
        """Whether rows that annotator ``source`` emits as ``emitted`` may be among these."""
        return (self.kind == emitted.kind and self.source in (None, source)
                and (self.derived is None or emitted.derived in (None, self.derived))
                and (self.region_type is None or emitted.region_type in (None, self.region_type)))

    def __str__(self) -> str:
        words = ({True: "derived", False: "top-level", None: ""}[self.derived], self.region_type or "", self.kind)
        text = " ".join(w for w in words if w)
        return f"{text} of {self.source}" if self.source else text


class Annotator(abc.ABC):
    """Base of every annotator.

    Subclasses set ``name`` (registry name, also the ``source`` column) and ``kinds`` (the
    annotation kinds they emit), take their settings as keyword arguments in ``__init__``
    (validated there: a missing model or package raises :class:`AnnotatorError` at
    construction), load heavy state lazily in :meth:`load`, and implement :meth:`annotate`.
    One that reads rows of the round declares them in ``reads`` (and ``"annotations"`` in
    ``needs``): ``engine.annotate.stages`` runs it after every configured annotator whose
    emitted rows may be among them.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()
    #: what ``annotate`` reads from ``ImageItem.context``: ``"annotations"`` (the rows of the
    #: round; exactly when ``reads`` is set, the pipeline loads them only then) and ``"meta"``
    needs: ClassVar[tuple[str, ...]] = ()
    #: the rows of the round ``annotate`` reads from ``context["annotations"]`` (empty: none)
    reads: ClassVar[tuple[Rows, ...]] = ()
    #: the rows it emits, as precisely as readers need (empty: any row of each of ``kinds``)
    emits: ClassVar[tuple[Rows, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if bool(cls.reads) != ("annotations" in cls.needs):
            raise TypeError(f"{cls.__qualname__}: set reads (the rows of the round it reads) exactly when needs "
                            f"has 'annotations'; got reads={cls.reads!r}, needs={cls.needs!r}")
        if cls.emits and {r.kind for r in cls.emits} != set(cls.kinds):
            raise TypeError(f"{cls.__qualname__}: emits must cover exactly the kinds {cls.kinds!r}; got {cls.emits!r}")

    @classmethod
    def emitted_rows(cls) -> tuple[Rows, ...]:
        """``emits``, or any row of each of ``kinds`` when that is not declared."""
        return cls.emits or tuple(Rows(kind) for kind in cls.kinds)

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
