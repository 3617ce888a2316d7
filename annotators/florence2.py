"""The ``florence2`` annotator: a thin adapter of :class:`florence2.model.Florence2Model` to the
annotator contract. Every task prompt of the settings runs over the batch
(:meth:`~florence2.model.Florence2Model.predict`: generation, parsing, per-item scores and views
live there) and each payload becomes an annotation row (absolute pixels of the upright image,
boxes x0, y0, x1, y1):

- CAPTION / DETAILED_CAPTION / MORE_DETAILED_CAPTION -> ``caption`` rows (brief/detailed/more_detailed);
- OD, DENSE_REGION_CAPTION -> ``region`` rows (object; text = label, bbox);
- OCR_WITH_REGION -> ``region`` rows (ocr; text, quad, enclosing bbox);
- CAPTION_TO_PHRASE_GROUNDING grounds the image's own brief caption -> ``phrase`` rows (parent_id
  = that caption's annotation_id, span_start/span_end = the phrase's character span in it);
- REGION_TO_SEGMENTATION, prompted with each OD box -> polygons and mask_rle on that OD row.

``score`` is per row, from the row's own generated tokens (:mod:`florence2.model`); with
``views`` (e.g. ``["hflip"]``) OD / dense-region boxes are rescored by view consistency or fused
(``view_fusion``). ``stats`` counts generations, parse failures, score fallbacks and the views'
work (the model's counters). Rows with equal ids are kept once (the first).
"""

from __future__ import annotations

from typing import Any

from annotators.base import Annotator, ImageBatch, ImageItem, Rows
from annotators.registry import register_annotator
from florence2.model import Florence2Model
from florence2.payloads import Payload
from florence2.settings import Florence2Settings
from hf.settings import settings_from_kwargs
from storage.schema import KIND_CAPTION, KIND_PHRASE, KIND_REGION, annotation_row


@register_annotator("florence2")
class Florence2Annotator(Annotator):
    """Florence-2 over every task prompt; see the module docstring for the row mapping and the score."""

    kinds = (KIND_CAPTION, KIND_REGION, KIND_PHRASE)
    reads = ()  # the image alone: its phrase rows' parents are its own captions
    emits = (Rows(KIND_CAPTION, derived=False), Rows(KIND_REGION, derived=False), Rows(KIND_PHRASE, derived=True))

    def __init__(self, **settings: Any) -> None:
        self.settings = settings_from_kwargs(Florence2Settings, settings, self.name)
        self.model = Florence2Model(self.settings, self.name)
        self.batch_size = self.settings.batch_size

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def stats(self) -> Any:
        """The model's counters (generations, parse failures, score fallbacks, views)."""
        return self.model.stats

    def load(self) -> None:
        self.model.load()

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}  # one row per id: a region repeated in a generation,
        predictions = self.model.predict([item.image for item in batch.items])  # or found by OD and dense regions
        for item, prediction in zip(batch.items, predictions):
            ids: list[str] = []
            for payload, parent in zip(prediction.payloads, prediction.parents):
                row = self._row(item, batch.round, payload, None if parent is None else ids[parent])
                ids.append(row["annotation_id"])
                rows.setdefault(row["annotation_id"], row)
        return list(rows.values())

    def _row(self, item: ImageItem, round_: int, payload: Payload, parent_id: str | None) -> dict[str, Any]:
        """The annotation row of a payload (its ``score``, if any, included; the id ignores it)."""
        columns = {k: v for k, v in payload.items() if k != "kind"}
        if parent_id is not None:
            columns["parent_id"] = parent_id
        return annotation_row(image_id=item.image_id, round_=round_, source=self.name,
                              source_version=self.version, kind=payload["kind"], **columns)
