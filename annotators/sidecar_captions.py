"""Existing captions from the images' sidecar metadata (alt text, as web datasets carry it).

Reads ``item.context["meta"]`` (``storage.readers.base`` groups ``KEY.txt`` / ``KEY.json`` with
``KEY.jpg``: ``meta["txt"]`` is the text file, ``meta["json"]`` the parsed JSON; Parquet shards'
scalar columns are ``meta["columns"]``). By convention, with no ``field`` set: the ``.txt``
sidecar (WebDataset's caption), else the first of :data:`CAPTION_FIELDS` in the ``.json``
sidecar, else in the Parquet columns. ``field = "txt"`` reads only the ``.txt`` sidecar; any
other ``field`` only that JSON key (or column). Emits one ``caption`` row of granularity
``granularity`` per image that has a non-empty text; no score (it is a given, not a prediction).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from annotators.base import Annotator, ImageBatch, Rows
from annotators.registry import register_annotator
from hf.settings import check_positive_int, settings_from_kwargs
from storage.schema import GRANULARITIES, KIND_CAPTION, annotation_row

#: the JSON keys (and Parquet columns) that hold a caption by convention, the first present wins
CAPTION_FIELDS = ("caption", "text", "alt", "alt_text", "description")

#: ``field`` that reads the ``.txt`` sidecar
TXT = "txt"


@dataclass(frozen=True)
class SidecarCaptionSettings:
    """``field``: "" (by convention: ``.txt``, then :data:`CAPTION_FIELDS`), ``txt``, or one JSON
    key / column; ``granularity``: brief, detailed or more_detailed."""

    field: str = ""
    granularity: str = "brief"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.field, str):
            raise ValueError(f"field must be a sidecar key, txt, or \"\" (by convention), got {self.field!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        check_positive_int("batch_size", self.batch_size)


def _clean(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _first(meta: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    """The first non-empty text under one of ``fields`` in the ``.json`` sidecar, else in the
    Parquet columns."""
    for table in (meta.get("json"), meta.get("columns")):
        if isinstance(table, dict):
            for key in fields:
                if (text := _clean(table.get(key))) is not None:
                    return text
    return None


def sidecar_text(meta: dict[str, Any], field: str = "") -> str | None:
    """The caption the sidecars give for ``field`` (see the module docstring), or None."""
    if field == TXT:
        return _clean(meta.get(TXT))
    if field:
        return _first(meta, (field,))
    return _clean(meta.get(TXT)) or _first(meta, CAPTION_FIELDS)


@register_annotator("sidecar_captions")
class SidecarCaptions(Annotator):
    """Captions that came with the images (sidecar alt text) as ``caption`` rows."""

    kinds = (KIND_CAPTION,)
    needs = ("meta",)
    reads = ()
    emits = (Rows(KIND_CAPTION, derived=False),)

    def __init__(self, **settings: Any):
        self.settings = settings_from_kwargs(SidecarCaptionSettings, settings, self.name)
        self.batch_size = self.settings.batch_size

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.settings.field}|{self.settings.granularity}".encode()).hexdigest()[:16]

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        rows = []
        for item in batch.items:
            text = sidecar_text(dict(item.context.get("meta") or {}), self.settings.field)
            if text:
                rows.append(annotation_row(image_id=item.image_id, round_=batch.round, source=self.name,
                                           source_version=self.version, kind=KIND_CAPTION,
                                           granularity=self.settings.granularity, text=text))
        return rows
